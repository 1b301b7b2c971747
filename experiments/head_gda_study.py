"""Gaussian discriminant heads beside the residual logistic heads: does a whitened candidate family help?

Until 2026-12-08 the feature head chose among residual logistic heads whose weights are pulled to zero
in the plain (Euclidean) metric of the image features. Few-shot work on CLIP-like models
(training-free GDA, Wang et al. 2024) finds that a shared-covariance Gaussian classifier, whose
weights are the class means seen through the inverse of a shrunk within-class covariance, often
beats a probe at few shots: it follows the directions in which the classes really differ rather
than those in which the features simply vary a lot. This study adds such heads as candidates:

    logits = a * z0 + beta * (f @ (M P).T - 0.5 * diag(M P M.T)),   P = ((1 - alpha) S + alpha * tr(S)/D * I)^-1

with ``M`` the class means of the labelled features and ``S`` their pooled within-class
covariance (both recomputed without the held-out fold inside cross-validation), and ``a`` the
weight kept on the sentence scores (under a shift they may deserve less). Rules compared,
all on the same labelled images and folds as the default:

- ``default``: the logistic heads only (`fit_feature_head` with ``head_family="logistic"``, the
  default before 2026-12-08; checked equal to it in every cell).
- ``gda``: the sentence scores unless a GDA candidate passes the default's check (the accuracy
  arm, or at least as many images right and clearly lower log-loss than the sentence scores),
  then the lowest held-out log-loss among those that pass.
- ``union``: the default's candidates and the GDA ones together, the same rule over all (what
  `fit_feature_head` does since it became the default, ``head_family="logistic+gaussian"``;
  checked equal to it in every cell).

Design tool for the built-in tasks (experiments/tuning-suite.json) and the design tasks
(experiments/design/design-suite.json, --suite); never run it on a held-out suite to tune.

    OMP_NUM_THREADS=1 python experiments/head_gda_study.py --shots 1,4,16 --seeds 5
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from biomedvr_cli.method import feature_head as fh
from biomedvr_cli.method import gaussian_head as gaussian
from biomedvr_cli.method.config import MethodConfig
from biomedvr_cli.method.gaussian_head import GaussianHead

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_cells import print_summary, study_cells, write_rows  # noqa: E402

# The study's grids are the method's (they were chosen here first, then moved into MethodConfig).
GRID = MethodConfig()
LOGISTIC = replace(GRID, head_family="logistic")  # the default before 2026-12-08


def passes(correct, nll, start_correct, start_nll, z: float, likelihood: bool) -> bool:
    """The default's check against the sentence scores (the likelihood arm against them unrecalibrated)."""
    if fh.clearly_better(correct, start_correct, z):
        return True
    gained, lost = fh._flips(correct, start_correct)
    return likelihood and gained >= lost and fh.clearly_more_likely(nll, start_nll, z)


def choose(cell, config: MethodConfig) -> dict[str, object]:
    """The candidate each rule keeps: ("inf",), ("logistic", penalty) or ("gda", alpha, beta, a)."""
    n, steps, z = cell.classes, config.head_lbfgs_steps, config.head_clear_z
    offsets, features, labels = cell.offsets, cell.features, cell.labels
    per_class = torch.bincount(labels, minlength=n)
    folds = min(config.head_folds, int(per_class.max()))
    if folds < 2 or labels.numel() < 2 * n:
        return {"default": ("inf",), "gda": ("inf",), "union": ("inf",)}
    fold_of = fh.stratified_folds(labels, folds, cell.seed)
    start_correct, start_nll = fh._cross_validate(offsets, features, labels, n, math.inf, fold_of, folds, steps)
    likelihood = config.head_test == "either" and int(per_class.min()) >= config.head_likelihood_min
    start_key = (-float(start_nll.mean()), float(start_correct.float().mean()))
    logistic, gda = [], []
    for penalty in config.head_penalties:
        correct, nll = fh._cross_validate(offsets, features, labels, n, penalty, fold_of, folds, steps)
        ok = fh.clearly_better(correct, start_correct, z)
        if not ok and likelihood:
            gained, lost = fh._flips(correct, start_correct)
            _, recal = fh._cross_validate(offsets, features[:, :0], labels, n, penalty, fold_of, folds, steps)
            ok = gained >= lost and fh.clearly_more_likely(nll, recal, z)
        if ok:
            logistic.append(((-float(nll.mean()), float(correct.float().mean())), ("logistic", penalty)))
    scores = {}
    for head in gaussian.candidates(GRID.head_gaussian_shrinkage, GRID.head_gaussian_scales,
                                    GRID.head_gaussian_sentence_weights):
        if head.shrinkage not in scores:
            scores[head.shrinkage] = gaussian.held_out_scores(features, labels, n, head.shrinkage, fold_of, folds)
        if scores[head.shrinkage] is None:
            continue
        logits = gaussian.held_out_logits(offsets, scores[head.shrinkage], head)
        correct, nll = logits.argmax(1) == labels, F.cross_entropy(logits, labels, reduction="none")
        if passes(correct, nll, start_correct, start_nll, z, likelihood):
            gda.append(((-float(nll.mean()), float(correct.float().mean())),
                        ("gda", head.shrinkage, head.scale, head.sentence_weight)))

    def best(candidates):
        kept = [c for c in candidates if c[0] > start_key]
        return max(kept, key=lambda c: c[0])[1] if kept else ("inf",)

    return {"default": best(logistic), "gda": best(gda), "union": best(logistic + gda)}


def test_accuracy(cell, choice, config: MethodConfig) -> float:
    """Test accuracy of ``choice`` refitted on every labelled image (as fit stores it: one linear head)."""
    candidate = (GaussianHead(*choice[1:]) if choice[0] == "gda"
                 else math.inf if choice[0] == "inf" else choice[1])
    w, b, a = fh.solve_candidate(cell.offsets, cell.features, cell.labels, cell.classes, candidate,
                                 steps=config.head_lbfgs_steps)
    logits = a * cell.test_offsets + cell.test_features @ w.t() + b
    return float((logits.argmax(1) == cell.test_labels).float().mean())


def main() -> None:
    from biomedvr_cli.backbones import load_backbone

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("experiments/tuning-suite.json"))
    parser.add_argument("--shots", default="1,4,16")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    config = LOGISTIC
    backbone = load_backbone("sandbox", device="cpu")
    rows, names = [], ["default", "gda", "union"]
    for cell in study_cells(args.suite, [int(s) for s in args.shots.split(",")], args.seeds, backbone):
        chosen = choose(cell, config)
        for name, method in (("default", LOGISTIC), ("union", GRID)):  # the study's rules must be the shipped ones
            fit = fh.fit_feature_head(cell.offsets, cell.features, cell.labels, cell.classes, seed=cell.seed,
                                      config=method)
            shipped = (("gda", fit.penalty.shrinkage, fit.penalty.scale, fit.penalty.sentence_weight)
                       if isinstance(fit.penalty, GaussianHead)
                       else ("inf",) if math.isinf(fit.penalty) else ("logistic", fit.penalty))
            if chosen[name] != shipped:
                raise SystemExit(f"{cell.task} K={cell.shots} s{cell.seed}: study's {name} chose {chosen[name]}, "
                                 f"fit {shipped}")
        accuracies = {name: test_accuracy(cell, chosen[name], config) for name in names}
        rows.append(cell.row(**accuracies, **{f"{name} choice": list(chosen[name]) for name in names}))
        print(f"{cell.task} K={cell.shots} s{cell.seed}: zs {cell.zero_shot:.3f} probe {cell.probe:.3f} "
              + " ".join(f"{name} {accuracies[name]:.3f} {chosen[name]}" for name in names), flush=True)
    print_summary(rows, names)
    write_rows(args.out, "head_gda_study.py", args, rows)


if __name__ == "__main__":
    with torch.no_grad():
        main()

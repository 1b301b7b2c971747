"""Gaussian discriminant heads beside the residual logistic heads: does a whitened candidate family help?

The default feature head chooses among residual logistic heads whose weights are pulled to zero
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

- ``default``: `fit_feature_head` as shipped.
- ``gda``: the sentence scores unless a GDA candidate passes the default's check (the accuracy
  arm, or at least as many images right and clearly lower log-loss than the sentence scores),
  then the lowest held-out log-loss among those that pass.
- ``union``: the default's candidates and the GDA ones together, the same rule over all.

Design tool for the built-in tasks (experiments/tuning-suite.json) and the design tasks
(experiments/design/design-suite.json, --suite); never run it on a held-out suite to tune.

    OMP_NUM_THREADS=1 python experiments/head_gda_study.py --shots 1,4,16 --seeds 5
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from biomedvr_cli.method import feature_head as fh
from biomedvr_cli.method.config import MethodConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_cells import print_summary, study_cells, write_rows  # noqa: E402

ALPHAS = (0.2, 0.5, 0.8)
BETAS = (0.01, 0.03, 0.1, 0.3, 1.0)
SENTENCE_WEIGHTS = (1.0, 0.5, 0.0)


def gda_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
             alpha: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(W [C, D], b [C]) of the shared-covariance Gaussian classifier, or None when a class has no image
    or the labelled features do not vary within their classes (one image a class)."""
    x = features.double()
    counts = torch.bincount(labels, minlength=num_classes)
    if bool((counts == 0).any()):
        return None
    means = torch.zeros(num_classes, x.shape[1], dtype=torch.float64).index_add_(0, labels, x) / counts[:, None]
    residual = x - means[labels]
    scatter = residual.t() @ residual / max(x.shape[0] - num_classes, 1)
    spread = float(torch.trace(scatter)) / x.shape[1]
    if spread <= 0:
        return None
    shrunk = (1 - alpha) * scatter + alpha * spread * torch.eye(x.shape[1], dtype=torch.float64)
    weight = torch.linalg.solve(shrunk, means.t()).t()  # M P (P symmetric)
    bias = -0.5 * (weight * means).sum(1)
    return weight.float(), bias.float()


def gda_held_out(offsets, features, labels, num_classes, alpha, beta, a, fold_of, folds) -> torch.Tensor | None:
    """Held-out logits [N, C] of each image from the GDA head fitted without its fold."""
    logits = a * offsets
    for k in range(folds):
        held = fold_of == k
        if not bool(held.any()):
            continue
        head = gda_head(features[~held], labels[~held], num_classes, alpha)
        if head is None:
            return None
        weight, bias = head
        logits[held] = a * offsets[held] + beta * (features[held] @ weight.t() + bias)
    return logits


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
    for alpha in ALPHAS:
        for beta in BETAS:
            for a in SENTENCE_WEIGHTS:
                logits = gda_held_out(offsets, features, labels, n, alpha, beta, a, fold_of, folds)
                if logits is None:
                    continue
                correct, nll = logits.argmax(1) == labels, F.cross_entropy(logits, labels, reduction="none")
                if passes(correct, nll, start_correct, start_nll, z, likelihood):
                    gda.append(((-float(nll.mean()), float(correct.float().mean())), ("gda", alpha, beta, a)))

    def best(candidates):
        kept = [c for c in candidates if c[0] > start_key]
        return max(kept, key=lambda c: c[0])[1] if kept else ("inf",)

    return {"default": best(logistic), "gda": best(gda), "union": best(logistic + gda)}


def test_accuracy(cell, choice, config: MethodConfig) -> float:
    """Test accuracy of ``choice`` refitted on every labelled image."""
    n = cell.classes
    if choice[0] == "gda":
        weight, bias = gda_head(cell.features, cell.labels, n, choice[1])
        logits = choice[3] * cell.test_offsets + choice[2] * (cell.test_features @ weight.t() + bias)
    else:
        penalty = math.inf if choice[0] == "inf" else choice[1]
        w, b, a = fh.solve(cell.offsets, cell.features, cell.labels, n, penalty, steps=config.head_lbfgs_steps)
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
    config = MethodConfig()
    backbone = load_backbone("sandbox", device="cpu")
    rows, names = [], ["default", "gda", "union"]
    for cell in study_cells(args.suite, [int(s) for s in args.shots.split(",")], args.seeds, backbone):
        chosen = choose(cell, config)
        fit = fh.fit_feature_head(cell.offsets, cell.features, cell.labels, cell.classes, seed=cell.seed, config=config)
        shipped = ("inf",) if math.isinf(fit.penalty) else ("logistic", fit.penalty)
        if chosen["default"] != shipped:  # the study's copy of the rule must be the shipped one
            raise SystemExit(f"{cell.task} K={cell.shots} s{cell.seed}: study chose {chosen['default']}, fit {shipped}")
        accuracies = {name: test_accuracy(cell, chosen[name], config) for name in names}
        rows.append(cell.row(**accuracies, **{f"{name} choice": list(chosen[name]) for name in names}))
        print(f"{cell.task} K={cell.shots} s{cell.seed}: zs {cell.zero_shot:.3f} probe {cell.probe:.3f} "
              + " ".join(f"{name} {accuracies[name]:.3f} {chosen[name]}" for name in names), flush=True)
    print_summary(rows, names)
    write_rows(args.out, "head_gda_study.py", args, rows)


if __name__ == "__main__":
    with torch.no_grad():
        main()

"""Repeated cross-validation for the feature head's choice: does averaging over fold partitions help?

The default `fit` scores every penalty by one stratified k-fold partition of the labelled
images. Which images share a fold is itself a draw: with 40 labelled images a different
partition can change the held-out numbers enough to change the chosen penalty. This study
averages each image's held-out log-loss and correctness over R partitions (fold seeds
``seed + 7919 * r``) and applies the default's rule to the averages: the check against the
sentence scores becomes a paired test on the per-image differences (gain = sum of differences,
standard error = root of the sum of their squares, which is the McNemar form when every
difference is -1, 0 or 1), the likelihood arm and the log-loss choice read the averaged
log-losses. R = 1 is the default and must give what `fit_feature_head` gives (checked).

Design tool for the built-in tasks (experiments/tuning-suite.json) and the design tasks
(experiments/design/design-suite.json); never run it on a held-out suite. Run from
``experiments/``; it prints ``TASK K=k sS: ...`` lines that rules_per_task.py reads.

    OMP_NUM_THREADS=1 python head_repeat_study.py --shots 1,4,16 --seeds 5 --repeats 3
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

FOLD_SEED_STEP = 7919  # a prime, so that the partitions of nearby seeds do not coincide


def averaged_scores(offsets, features, labels, num_classes, penalty, *, seed, folds, repeats, steps):
    """Per-image held-out correctness (fraction of partitions) and log-loss, averaged over ``repeats``
    partitions, and the same log-loss of the sentence scores recalibrated (scale and bias only)."""
    correct, nll, recal = [], [], []
    for r in range(repeats):
        fold_of = fh.stratified_folds(labels, folds, seed + FOLD_SEED_STEP * r)
        logits = fh.held_out_logits(offsets, features, labels, num_classes, penalty, fold_of, folds, steps)
        correct.append((logits.argmax(1) == labels).double())
        nll.append(F.cross_entropy(logits, labels, reduction="none").double())
        if not math.isinf(penalty):
            _, recal_nll = fh._cross_validate(offsets, features[:, :0], labels, num_classes, penalty, fold_of,
                                              folds, steps)
            recal.append(recal_nll.double())
    mean = lambda xs: torch.stack(xs).mean(0)  # noqa: E731
    return mean(correct), mean(nll), (mean(recal) if recal else None)


def clearly_better(correct: torch.Tensor, start_correct: torch.Tensor, z: float) -> bool:
    """The paired check on per-image differences in [-1, 1] (McNemar's when they are -1, 0, 1)."""
    diff = correct - start_correct
    return float(diff.sum()) > z * math.sqrt(float(diff.pow(2).sum()))


def choose(start, heads, *, z: float, likelihood: bool):
    """The default's rule (check at z, likelihood arm, lowest held-out log-loss) on averaged numbers."""
    best, best_key = start, (-float(start[2].mean()), float(start[1].mean()))
    for penalty, correct, nll, recal in heads:
        passed = clearly_better(correct, start[1], z)
        if not passed and likelihood and recal is not None:
            diff = correct - start[1]
            passed = float(diff.sum()) >= 0 and fh.clearly_more_likely(nll.float(), recal.float(), z)
        key = (-float(nll.mean()), float(correct.mean()))
        if passed and key > best_key:
            best, best_key = (penalty, correct, nll, recal), key
    return best[0]


def cell_accuracies(z_train, xs, ys, num_classes, z_test, tx, ty, *, seed, config, repeats_list):
    """Test accuracy of the penalty each R chooses, and of every penalty (for the oracle)."""
    steps = config.head_lbfgs_steps
    per_class = torch.bincount(ys, minlength=num_classes)
    folds = min(config.head_folds, int(per_class.max()))
    if folds < 2 or ys.numel() < 2 * num_classes:
        return None
    likelihood = int(per_class.min()) >= config.head_likelihood_min
    test_acc = {}
    for penalty in (math.inf, *config.head_penalties):
        w, b, a = fh.solve(z_train, xs, ys, num_classes, penalty, steps=steps)
        test_acc[penalty] = float((((a * z_test + tx @ w.t() + b).argmax(1)) == ty).float().mean())
    chosen = {}
    for repeats in repeats_list:
        start_c, start_n, _ = averaged_scores(z_train, xs, ys, num_classes, math.inf, seed=seed, folds=folds,
                                              repeats=1, steps=steps)  # the start does not depend on folds
        heads = [(p, *averaged_scores(z_train, xs, ys, num_classes, p, seed=seed, folds=folds, repeats=repeats,
                                      steps=steps)) for p in config.head_penalties]
        chosen[repeats] = choose((math.inf, start_c, start_n, None), heads, z=config.head_clear_z,
                                 likelihood=likelihood)
    return chosen, test_acc


def main() -> None:
    from biomedvr_cli.backbones import load_backbone

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("tuning-suite.json"))
    parser.add_argument("--shots", default="1,4,16")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", default="1,3", help="partitions to average, comma-separated (1 = the default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    repeats_list = [int(r) for r in args.repeats.split(",")]
    config = MethodConfig()
    rows = []
    shots = [int(s) for s in args.shots.split(",")]
    for cell in study_cells(args.suite, shots, args.seeds, load_backbone("sandbox", device="cpu")):
        made = cell_accuracies(cell.offsets, cell.features, cell.labels, cell.classes, cell.test_offsets,
                               cell.test_features, cell.test_labels, seed=cell.seed, config=config,
                               repeats_list=repeats_list)
        if made is None:
            continue
        chosen, test_acc = made
        fit = fh.fit_feature_head(cell.offsets, cell.features, cell.labels, cell.classes, seed=cell.seed, config=config)
        if 1 in chosen and chosen[1] != fit.penalty:
            raise SystemExit(f"R=1 chose {chosen[1]}, fit_feature_head {fit.penalty} ({cell.task} K={cell.shots} "
                             f"s{cell.seed})")
        row = cell.row(**{f"R={r}": test_acc[p] for r, p in chosen.items()}, **{"oracle (test)": max(test_acc.values())})
        rows.append(row)
        print(f"{cell.task} K={cell.shots} s{cell.seed}: zs {cell.zero_shot:.3f} probe {cell.probe:.3f} "
              + " ".join(f"{k} {row[k]:.3f}" for k in row if k.startswith("R=") or k.startswith("oracle")), flush=True)
    print_summary(rows, [f"R={r}" for r in repeats_list] + ["oracle (test)"])
    write_rows(args.out, "head_repeat_study.py", args, rows)

if __name__ == "__main__":
    with torch.no_grad():
        main()

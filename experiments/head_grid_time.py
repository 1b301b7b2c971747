"""What the feature head's choice costs in one fit, on BiomedCLIP-sized features.

The head is fitted on frozen image features, so its cost does not depend on the encoder, only
on the feature size, the labelled images and the penalties tried. This times
``fit_feature_head`` on synthetic 512-dimensional features (ViT-B/16's embedding size) with
one penalty selected over decades (``biomedvr-decade-grid``), one selected over half-decades
(``biomedvr-logistic-head``, the default until 2026-12-08), one selected among the half-decades
and the Gaussian heads (the default) and the average over half-decades (``biomedvr-average-head``), side by side in one
process, and prints the median of ``--repeats`` runs each (docs/results.md). The calibration
column times the fold heads the prediction sets keep (method/trust.py), refitted at the
chosen penalty or, for the average, at each averaged one.

    OMP_NUM_THREADS=1 python experiments/head_grid_time.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from biomedvr_cli.method.config import DECADE_PENALTIES, MethodConfig
from biomedvr_cli.method.feature_head import fit_feature_head
from biomedvr_cli.method.trust import _fold_heads


def task(classes: int, per_class: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sentence scores, L2-normalised features with a weak class signal, and labels."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes * per_class) % classes
    prototypes = F.normalize(torch.randn(classes, dim, generator=gen), dim=1)
    features = F.normalize(0.3 * prototypes[labels] + torch.randn(labels.numel(), dim, generator=gen) / dim**0.5, dim=1)
    offsets = torch.randn(labels.numel(), classes, generator=gen) + 1.5 * F.one_hot(labels, classes)
    return offsets, features, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--images", default="8,12", help="labelled images a class (8 + 4 validation = 12)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    grids = {"decades, select": MethodConfig(head_penalties=DECADE_PENALTIES, head_family="logistic"),
             "half, select": MethodConfig(head_family="logistic"),
             "half+gaussian": MethodConfig(), "half, average": MethodConfig(head_combine="average")}
    print(f"{'images':>6} {'rule':<16} {'head s':>7} {'calibration s':>14} {'penalties kept':>15}")
    for per_class in (int(n) for n in args.images.split(",")):
        offsets, features, labels = task(args.classes, per_class, args.dim, seed=per_class)
        fit_feature_head(offsets, features, labels, args.classes, seed=0, config=grids["half, select"])  # warm-up
        times: dict[str, list[float]] = {name: [] for name in grids}
        calibration: dict[str, list[float]] = {name: [] for name in grids}
        kept: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, config in grids.items():  # interleaved, so that a busy machine hits both alike
                start = time.perf_counter()
                fit = fit_feature_head(offsets, features, labels, args.classes, seed=0, config=config)
                times[name].append(time.perf_counter() - start)
                start = time.perf_counter()
                _fold_heads(offsets, features, labels, args.classes, fit.mixture, fit.folds, 0, config.head_lbfgs_steps)
                calibration[name].append(time.perf_counter() - start)
                kept[name] = len(fit.mixture)
        for name in grids:
            print(f"{labels.numel():>6} {name:<16} {statistics.median(times[name]):>7.2f} "
                  f"{statistics.median(calibration[name]):>14.2f} {kept[name]:>15}")


if __name__ == "__main__":
    with torch.no_grad():
        main()

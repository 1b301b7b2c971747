"""What the half-decade penalty grid adds to one feature-head fit, on BiomedCLIP-sized features.

The head is fitted on frozen image features, so its cost does not depend on the encoder, only
on the feature size, the labelled images and the penalties tried. This times
``fit_feature_head`` on synthetic 512-dimensional features (ViT-B/16's embedding size) with
the decade grid (``biomedvr-decade-grid``) and the default half-decade grid, side by side in
one process, and prints the median of ``--repeats`` runs each (docs/results.md).

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
    grids = {"decades": MethodConfig(head_penalties=DECADE_PENALTIES), "half-decades": MethodConfig()}
    print(f"{'images':>6} {'grid':<13} {'median s':>8}")
    for per_class in (int(n) for n in args.images.split(",")):
        offsets, features, labels = task(args.classes, per_class, args.dim, seed=per_class)
        fit_feature_head(offsets, features, labels, args.classes, seed=0, config=grids["decades"])  # warm-up
        times: dict[str, list[float]] = {name: [] for name in grids}
        for _ in range(args.repeats):
            for name, config in grids.items():  # interleaved, so that a busy machine hits both alike
                start = time.perf_counter()
                fit_feature_head(offsets, features, labels, args.classes, seed=0, config=config)
                times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            print(f"{labels.numel():>6} {name:<13} {statistics.median(values):>8.2f}")


if __name__ == "__main__":
    with torch.no_grad():
        main()

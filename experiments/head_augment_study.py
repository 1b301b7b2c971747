"""Augmented views for the feature head: does fitting it on crops and flips of each labelled image help?

The default `fit` fits its feature head (and scores its penalties by cross-validation) on one
feature per labelled image. Few-shot methods on CLIP-like models usually train on random
crops and flips of the support images instead (CoOp; CLAP and Tip-Adapter-F cache the features
of several augmented views). This study encodes ``--views`` augmented views of every labelled
image (random resized crop with area in ``--scale``, a random horizontal flip) and fits the
head on the originals plus the views, while every held-out score reads the original image only
(as `predict` does, one pass). The folds are over images: an image's views never sit in
another fold than the image. The choice among penalties is the default's rule unchanged
(the check against the sentence scores at ``head_clear_z``, the likelihood arm, the lowest
held-out log-loss). With ``--views 0`` the rule must choose what `fit_feature_head` chooses
(checked on every cell).

Design tool for the built-in tasks (experiments/tuning-suite.json) and the design tasks
(experiments/design/design-suite.json, --suite); never run it on a held-out suite to tune.
It prints ``TASK K=k sS: ...`` lines that rules_per_task.py reads.

    OMP_NUM_THREADS=1 python experiments/head_augment_study.py --shots 1,4,16 --seeds 5 --views 8
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from biomedvr_cli.method import feature_head as fh
from biomedvr_cli.method.augment import random_resized_crop
from biomedvr_cli.method.config import MethodConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_cells import print_summary, study_cells, write_rows  # noqa: E402


def view_features(backbone, images: torch.Tensor, views: int, *, seed: int,
                  scale: tuple[float, float]) -> torch.Tensor:
    """Features [N, V, D] of ``views`` augmented views of each uint8 image [N, 3, S, S]."""
    generator = torch.Generator().manual_seed(seed)
    floats = images.float() / 255.0
    out = []
    for _ in range(views):
        crops = random_resized_crop(floats, generator, scale=scale, ratio=(3 / 4, 4 / 3), flip=True)
        out.append(backbone.encode_images(crops.to(backbone.device)).cpu().float())
    return torch.stack(out, dim=1)


class Labelled:
    """Originals (offsets [N, C], features [N, D]) and their views ([N, V, C], [N, V, D])."""

    def __init__(self, offsets, features, labels, view_offsets, view_features_):
        self.offsets, self.features, self.labels = offsets, features, labels
        self.view_offsets, self.view_features = view_offsets, view_features_

    def training(self, keep: torch.Tensor, no_features: bool = False):
        """Offsets, features and labels to fit on: the kept originals and all their views."""
        z = [self.offsets[keep]]
        x = [self.features[keep]]
        y = [self.labels[keep]]
        views = self.view_features.shape[1]
        if views:
            z.append(self.view_offsets[keep].reshape(-1, self.offsets.shape[1]))
            x.append(self.view_features[keep].reshape(-1, self.features.shape[1]))
            y.append(self.labels[keep].repeat_interleave(views))
        x = torch.cat(x)
        return torch.cat(z), (x[:, :0] if no_features else x), torch.cat(y)


def held_out(data: Labelled, num_classes, penalty, fold_of, folds, steps, *, no_features=False):
    """Per-image held-out correctness and log-loss (each image scored on its original view)."""
    logits = torch.zeros(data.labels.numel(), num_classes)
    for k in range(folds):
        held = fold_of == k
        if not bool(held.any()):
            continue
        z, x, y = data.training(~held, no_features)
        w, b, a = fh.solve(z, x, y, num_classes, penalty, steps=steps)
        feats = data.features[held][:, : x.shape[1]]
        logits[held] = a * data.offsets[held] + feats @ w.t() + b
    return logits.argmax(1) == data.labels, F.cross_entropy(logits, data.labels, reduction="none")


def choose_penalty(data: Labelled, num_classes, *, seed, config: MethodConfig) -> float | None:
    """The default's rule (method/feature_head.py) on these training sets; None when CV cannot run."""
    steps, z = config.head_lbfgs_steps, config.head_clear_z
    per_class = torch.bincount(data.labels, minlength=num_classes)
    folds = min(config.head_folds, int(per_class.max()))
    if folds < 2 or data.labels.numel() < 2 * num_classes:
        return None
    fold_of = fh.stratified_folds(data.labels, folds, seed)
    start_correct, start_nll = held_out(data, num_classes, math.inf, fold_of, folds, steps)
    best = ((-float(start_nll.mean()), float(start_correct.float().mean())), math.inf)
    likelihood = config.head_test == "either" and int(per_class.min()) >= config.head_likelihood_min
    for penalty in config.head_penalties:
        correct, nll = held_out(data, num_classes, penalty, fold_of, folds, steps)
        passed = fh.clearly_better(correct, start_correct, z)
        if not passed and likelihood:
            gained, lost = fh._flips(correct, start_correct)
            _, recal = held_out(data, num_classes, penalty, fold_of, folds, steps, no_features=True)
            passed = gained >= lost and fh.clearly_more_likely(nll, recal, z)
        key = (-float(nll.mean()), float(correct.float().mean()))
        if passed and key > best[0]:
            best = (key, penalty)
    return best[1]


def test_accuracy(data: Labelled, num_classes, penalty, z_test, tx, ty, steps) -> float:
    z, x, y = data.training(torch.ones_like(data.labels, dtype=torch.bool))
    w, b, a = fh.solve(z, x, y, num_classes, penalty, steps=steps)
    return float(((a * z_test + tx @ w.t() + b).argmax(1) == ty).float().mean())


def main() -> None:
    from biomedvr_cli.backbones import load_backbone

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=Path("experiments/tuning-suite.json"))
    parser.add_argument("--shots", default="1,4,16")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--views", default="0,8", help="augmented views per image to compare, comma-separated")
    parser.add_argument("--scale", default="0.5,1.0", help="crop area range, as a fraction of the image")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    views_list = [int(v) for v in args.views.split(",")]
    low, high = (float(s) for s in args.scale.split(","))
    config = MethodConfig()
    steps = config.head_lbfgs_steps
    backbone = load_backbone("sandbox", device="cpu")
    rows = []
    shots = [int(s) for s in args.shots.split(",")]
    for cell in study_cells(args.suite, shots, args.seeds, backbone):
        n, most = cell.classes, max(views_list)
        all_views = view_features(backbone, cell.images, most, seed=cell.seed, scale=(low, high))
        all_offsets = cell.score(all_views.reshape(-1, all_views.shape[-1])).reshape(len(cell.labels), most, n)
        accuracies, penalties = {}, {}
        for views in views_list:
            labelled = Labelled(cell.offsets, cell.features, cell.labels, all_offsets[:, :views], all_views[:, :views])
            penalty = choose_penalty(labelled, n, seed=cell.seed, config=config)
            penalty = math.inf if penalty is None else penalty
            if views == 0:
                fit = fh.fit_feature_head(cell.offsets, cell.features, cell.labels, n, seed=cell.seed, config=config)
                if fit.penalty != penalty:
                    raise SystemExit(f"views 0 chose {penalty}, fit_feature_head {fit.penalty}")
            accuracies[f"V={views}"] = test_accuracy(labelled, n, penalty, cell.test_offsets, cell.test_features,
                                                     cell.test_labels, steps)
            penalties[f"V={views} penalty"] = penalty
        rows.append(cell.row(**accuracies, **penalties))
        print(f"{cell.task} K={cell.shots} s{cell.seed}: zs {cell.zero_shot:.3f} probe {cell.probe:.3f} "
              + " ".join(f"V={v} {accuracies[f'V={v}']:.3f} ({penalties[f'V={v} penalty']:g})" for v in views_list),
              flush=True)
    print_summary(rows, [f"V={v}" for v in views_list])
    write_rows(args.out, "head_augment_study.py", args, rows)

if __name__ == "__main__":
    with torch.no_grad():
        main()

"""Fit wall time of the default `fit` on a real-sized backbone on this CPU, extrapolated per epoch.

A random-weight open_clip ViT-B/16 at 224 px (speed does not depend on the weights) and the
default method on 8 shots x 5 classes (40 support + 20 validation images), timed in the pieces
`training.train_head` is made of: one VR training epoch over the support images (`train_vr`),
one validation check (the validation images through both views), and the fixed cost (the
feature head's two fits, on the support set and on every labelled image). A whole fit is then
extrapolated for a schedule:

    fixed + epochs run x epoch + checks x check

for the previous default (60 epochs, a check every 5, no early stop) and for the `fast`
recipe as shipped now, whose patience stops the VR stage after `patience` checks without a
higher validation accuracy (the usual case: the start is never beaten). The numbers are
extrapolations from two short runs, not a timed 60-epoch fit. A whole fit whose VR stage is
skipped (no trained epoch could pass its check, the usual case since 2026-12-07) is timed as a
whole.

    OMP_NUM_THREADS=2 python experiments/fit_time_vitb16.py
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def epoch_seconds(backbone, recipe, images, labels) -> float:
    """One VR training epoch over the support images (no validation, so no check and no refit)."""
    from harness import random_head

    from biomedvr_cli.method.training import LabelledImages, train_vr

    head = random_head(backbone, classes=5)
    start = time.perf_counter()
    train_vr(head, backbone.encode_images, LabelledImages(images, labels), None, replace(recipe, epochs=1), seed=0,
             device=backbone.device, shots=8)
    return time.perf_counter() - start


def fixed_seconds(backbone, images, labels, val_images, val_labels) -> float:
    """The feature head's two fits, as `fit` makes them: on the support set, then on every labelled image."""
    import torch
    from harness import random_head

    from biomedvr_cli.method.training import LabelledImages, fit_head_on_features

    head = random_head(backbone, classes=5)
    everything = LabelledImages(torch.cat([images, val_images]), torch.cat([labels, val_labels]))
    start = time.perf_counter()
    fit_head_on_features(head, backbone.encode_images, LabelledImages(images, labels), seed=0, device=backbone.device)
    fit_head_on_features(head, backbone.encode_images, everything, seed=0, device=backbone.device)
    return time.perf_counter() - start


def check_seconds(backbone, val_images) -> float:
    """One validation check: the validation images through the head's two views, scored."""
    from harness import random_head

    from biomedvr_cli.method.training import predict_logits

    head = random_head(backbone, classes=5)
    head.vr_pos.delta.data.add_(0.01)  # trained-looking views: the check encodes both, as during VR training
    start = time.perf_counter()
    predict_logits(head, backbone.encode_images, val_images, device=backbone.device)
    return time.perf_counter() - start


def skipped_fit_seconds(backbone, images, labels, val_images, val_labels) -> float:
    """A whole `train_head` whose VR stage is skipped, timed end to end.

    Random weights rarely get validation images right, so the skip is forced by a check no epoch
    can pass (``clear_z`` 1e6): the same path as a real start that gets 9 or fewer of the 20
    validation images wrong at the default 3.
    """
    from harness import random_head

    from biomedvr_cli.method.config import MethodConfig
    from biomedvr_cli.method.recipes import load_recipe
    from biomedvr_cli.method.training import train_head

    head = random_head(backbone, classes=5, config=MethodConfig(clear_z=1e6))
    start = time.perf_counter()
    result = train_head(head, backbone.encode_images, images, labels, val_images, val_labels, load_recipe("fast"),
                        seed=0, device=backbone.device, shots=8)
    seconds = time.perf_counter() - start
    assert result.vr is not None and result.vr.skipped, "the VR stage was expected to be skipped"
    return seconds


def extrapolate(fixed: float, epoch: float, check: float, *, epochs: int, every: int, patience: int | None) -> dict:
    """A whole fit's seconds for a schedule, when no trained epoch beats the start (the usual case)."""
    run = epochs if patience is None else min(epochs, every * patience)
    checks = 1 + run // every + (1 if run % every else 0)
    return {"epochs_run": run, "checks": checks, "seconds": fixed + run * epoch + checks * check}


def main() -> None:
    import torch

    from harness import random_backbone

    from biomedvr_cli.method.recipes import load_recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    backbone = random_backbone(args.model, "cpu")
    gen = torch.Generator().manual_seed(0)
    size = backbone.image_size
    images = torch.randint(0, 256, (40, 3, size, size), generator=gen, dtype=torch.uint8)
    labels = torch.arange(40) % 5
    val_images = torch.randint(0, 256, (20, 3, size, size), generator=gen, dtype=torch.uint8)
    val_labels = torch.arange(20) % 5
    fast = load_recipe("fast")
    base = replace(fast, patience=None)
    epoch = epoch_seconds(backbone, base, images, labels)
    check = check_seconds(backbone, val_images)
    fixed = fixed_seconds(backbone, images, labels, val_images, val_labels)
    skipped = skipped_fit_seconds(backbone, images, labels, val_images, val_labels)
    rows = {
        "previous default (60 epochs, check every 5, no early stop)":
            extrapolate(fixed, epoch, check, epochs=60, every=5, patience=None),
        f"default now (fast: {fast.epochs} epochs, check every {fast.eval_every}, patience {fast.patience})":
            extrapolate(fixed, epoch, check, epochs=fast.epochs, every=fast.eval_every, patience=fast.patience),
    }
    report = {"model": args.model, "image_size": size, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "shots": 8, "classes": 5,
              "measured": {"epoch_s": round(epoch, 1), "check_s": round(check, 1), "fixed_s": round(fixed, 1)},
              "extrapolated": {k: {**v, "minutes": round(v["seconds"] / 60, 1)} for k, v in rows.items()},
              "timed": {"whole fit, VR stage skipped_s": round(skipped, 1)}}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["measured"]
    print(f"{args.model} at {size} px, random weights, {report['threads']} threads, 8 shots x 5 classes")
    print(f"measured: VR epoch {m['epoch_s']} s, validation check {m['check_s']} s, "
          f"feature-head fits {m['fixed_s']} s")
    print(f"timed: a whole fit whose VR stage is skipped {report['timed']['whole fit, VR stage skipped_s']} s")
    print("| schedule | VR epochs run | checks | fit time (extrapolated) |")
    print("|---|---|---|---|")
    for name, row in report["extrapolated"].items():
        print(f"| {name} | {row['epochs_run']} | {row['checks']} | {row['minutes']} min |")


if __name__ == "__main__":
    main()

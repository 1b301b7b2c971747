"""The cells the feature-head studies share: per task, K and seed, the labelled features, the
sentence scores, the test set and the fair probe on the same images; and their summary table.

Used by head_repeat_study.py and head_augment_study.py (design tools for the built-in and design
tasks only).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class StudyCell:
    """One (task, K, seed): what a rule needs to choose, and what it is judged against."""

    task: str
    shots: int
    seed: int
    classes: int
    offsets: torch.Tensor  # sentence scores of the labelled images [N, C]
    features: torch.Tensor  # their features [N, D]
    labels: torch.Tensor  # [N]
    images: torch.Tensor  # their uint8 pixels [N, 3, S, S]
    test_offsets: torch.Tensor
    test_features: torch.Tensor
    test_labels: torch.Tensor
    zero_shot: float  # attribute zero-shot test accuracy
    probe: float  # the fair linear probe's test accuracy, on the same labelled images
    score: Callable[[torch.Tensor], torch.Tensor]  # the task's sentence scores of any features [M, D] -> [M, C]

    def row(self, **accuracies: float) -> dict[str, Any]:
        return {"task": self.task, "shots": self.shots, "seed": self.seed, "zs": self.zero_shot, "probe": self.probe,
                **accuracies}


def study_cells(suite: Path, shots: list[int], seeds: int, backbone) -> Iterator[StudyCell]:
    """Every (task, K, seed) of ``suite`` on ``backbone``, in order (support + validation drawn as ``fit`` does)."""
    from biomedvr_cli.benchmark.datasets import load_dataset
    from biomedvr_cli.benchmark.methods import JobInputs, Overrides, run_method
    from biomedvr_cli.benchmark.protocol import load_suite
    from biomedvr_cli.data import sample_few_shot
    from biomedvr_cli.method.zero_shot import zero_shot_logits

    for spec in load_suite(suite).datasets:
        data = load_dataset(spec)
        sets = data.attributes.sets
        tx, ty = data.features(backbone, data.test)
        z_test = zero_shot_logits(backbone, tx, data.classes, sets).float()
        zs = float((z_test.argmax(1) == ty).float().mean())
        for k in shots:
            for seed in range(seeds):
                split = sample_few_shot(data.pool, data.classes, k, seed=seed, val_shots=None)
                records = split.train + split.val
                xs, ys = data.features(backbone, records)
                probe = run_method("linear-probe", JobInputs(data, backbone, split.train, split.val, k, seed,
                                                              Overrides()))
                def score(features: torch.Tensor, classes=data.classes, sets=sets) -> torch.Tensor:
                    return zero_shot_logits(backbone, features, classes, sets).float()

                yield StudyCell(spec.name, k, seed, len(data.classes), score(xs), xs.float(), ys.long(),
                                data.pixels(records, backbone.image_size)[0], z_test, tx.float(), ty, zs,
                                float((probe.logits.argmax(1) == probe.labels).float().mean()), score)


def print_summary(rows: list[dict[str, Any]], names: list[str]) -> None:
    """Per rule and K: the mean difference to the probe and to zero-shot, and the cells past the goals' limits."""
    print("\n| rule | K | cells | mean vs probe | mean vs zs | cells >2 below probe | cells >1 below zs |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        for shots in sorted({r["shots"] for r in rows}):
            cells = [r for r in rows if r["shots"] == shots]
            vp = [100 * (r[name] - r["probe"]) for r in cells]
            vz = [100 * (r[name] - r["zs"]) for r in cells]
            print(f"| {name} | {shots} | {len(cells)} | {statistics.mean(vp):+.2f} | {statistics.mean(vz):+.2f} | "
                  f"{sum(v < -2 for v in vp)} | {sum(v < -1 for v in vz)} |")


def write_rows(out: Path | None, script: str, args: Any, rows: list[dict[str, Any]]) -> None:
    """The cells as JSON, with the command that made them."""
    if out:
        out.write_text(json.dumps({"command": f"python experiments/{script} " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and v is not None),
            "cells": rows}, indent=1, default=str) + "\n")

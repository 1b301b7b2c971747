"""How often seed noise alone puts a task outside issue 17's per-task limits (docs/results.md).

The goals ask that no task's mean over 3 seeds falls more than 1 point below attribute
zero-shot, or (at 4 and 16 shots) more than 2 points below the linear probe. Each seed draws
other labelled images, so each mean carries noise of its own; this script measures that noise
from the runs and asks what it alone would do to a method with no fault at all.

For each shot count it takes, per task and seed, the paired difference of the default against
the probe (same task, same seed, so the same labelled and test images) and against zero-shot
(which has no labelled images, so only the default varies). The spread of a task's seeds around
their own mean, pooled over tasks, is the noise. Then it simulates tasks whose *true*
difference is ``margin`` points (the same on every task) and whose seeds scatter like the
measured residuals (drawn from them, each task's residuals rescaled to undo the shrink of
centring on its own mean): how many tasks fall past the limit, and how often none does. The
measured means are never used, only the measured scatter around them.

    python experiments/goal_chance.py FOLDER [FOLDER ...] [--rename FOLDER:METHOD=NEW ...]

with the folders and renames of experiments/goal_table.py.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from goal_table import parse_renames

LIMITS = {"linear-probe": 2.0, "zs-attributes": 1.0}


def load_by_seed(folders: list[Path], renames) -> dict[tuple[str, str, int], dict[int, float]]:
    """(dataset, method, shots) -> {seed: test accuracy %}."""
    acc: dict[tuple[str, str, int], dict[int, float]] = defaultdict(dict)
    for folder in folders:
        for path in sorted((folder / "jobs").glob("*.json")):
            job = json.loads(path.read_text(encoding="utf-8"))
            method = renames.get((folder.resolve(), job["method"]), job["method"])
            acc[(job["dataset"], method, int(job["shots"]))][int(job["seed"])] = 100 * job["metrics"]["accuracy"]
    return acc


def paired_differences(acc, method: str, baseline: str, shots: int) -> dict[str, np.ndarray]:
    """Per task, the per-seed differences ``method - baseline`` (zero-shot: its one run for every seed)."""
    out = {}
    for (dataset, m, k), ours in acc.items():
        if m != method or k != shots:
            continue
        theirs = acc.get((dataset, baseline, 0 if baseline.startswith("zs-") else shots))
        if not theirs:
            continue
        seeds = sorted(ours) if baseline.startswith("zs-") else sorted(set(ours) & set(theirs))
        base = (lambda s: next(iter(theirs.values()))) if baseline.startswith("zs-") else theirs.__getitem__
        if len(seeds) >= 2:
            out[dataset] = np.array([ours[s] - base(s) for s in seeds])
    return out


def residual_pool(differences: dict[str, np.ndarray]) -> np.ndarray:
    """Each task's seeds minus their mean, rescaled by sqrt(n / (n - 1)) so their spread is unbiased."""
    parts = [(d - d.mean()) * math.sqrt(d.size / (d.size - 1)) for d in differences.values()]
    return np.concatenate(parts)


def simulate(pool: np.ndarray, tasks: int, seeds: int, margin: float, limit: float, *, draws: int,
             rng: np.random.Generator) -> tuple[float, float]:
    """(mean tasks past ``-limit``, share of draws with none) for ``tasks`` tasks at a true ``margin``."""
    noise = rng.choice(pool, size=(draws, tasks, seeds)).mean(axis=2)
    past = (margin + noise < -limit).sum(axis=1)
    return float(past.mean()), float((past == 0).mean())


def margin_for(pool, tasks, seeds, limit, *, target: float, draws: int, rng) -> float:
    """The smallest true margin (0.1-point steps) at which no task is past the limit in ``target`` of draws."""
    for step in range(300):
        margin = round(-limit + step / 10, 1)  # exact tenths, so a margin on the limit is not a hair below it
        if simulate(pool, tasks, seeds, margin, limit, draws=draws, rng=rng)[1] >= target:
            return margin
    return math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--method", default="biomedvr")
    parser.add_argument("--rename", action="append", default=[], metavar="FOLDER:METHOD=NEW")
    parser.add_argument("--draws", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    acc = load_by_seed(args.folders, parse_renames(args.rename))
    rng = np.random.default_rng(args.seed)
    print("| against | K | tasks | seeds | sd of one seed's difference | sd of a task's mean | measured tasks past "
          "| at true margin 0: tasks past / P(none) | at the measured mean margin: tasks past / P(none) "
          "| true margin for P(none) 0.5 | sd of true task margins |")
    print("|---" * 11 + "|")
    for baseline, limit in LIMITS.items():
        for shots in sorted({k for _, m, k in acc if m == args.method}):
            if baseline == "linear-probe" and shots < 4:
                continue
            diffs = paired_differences(acc, args.method, baseline, shots)
            if not diffs:
                continue
            seeds = min(d.size for d in diffs.values())
            pool = residual_pool(diffs)
            spread = float(pool.std(ddof=0))
            measured = sum(float(d.mean()) < -limit for d in diffs.values())
            mean_margin = float(np.mean([d.mean() for d in diffs.values()]))
            at_zero = simulate(pool, len(diffs), seeds, 0.0, limit, draws=args.draws, rng=rng)
            at_mean = simulate(pool, len(diffs), seeds, mean_margin, limit, draws=args.draws, rng=rng)
            needed = margin_for(pool, len(diffs), seeds, limit, target=0.5, draws=args.draws // 4, rng=rng)
            # Method of moments: the task means' spread less what the seeds' noise alone gives.
            between = float(np.var([d.mean() for d in diffs.values()], ddof=1)) - spread ** 2 / seeds
            print(f"| {baseline} (limit -{limit:g}) | {shots} | {len(diffs)} | {seeds} | {spread:.2f} "
                  f"| {spread / math.sqrt(seeds):.2f} | {measured} | {at_zero[0]:.1f} / {at_zero[1]:.3f} "
                  f"| {at_mean[0]:.1f} / {at_mean[1]:.3f} (margin {mean_margin:+.1f}) | {needed:+.1f} "
                  f"| {math.sqrt(max(between, 0.0)):.1f} |")


if __name__ == "__main__":
    main()

"""How often chance alone puts a task's mean coverage outside a band (issue #18, docs/trust.md).

Takes the trust study's ``--out`` files (experiments/trust_study.py) for the calibration size
``n`` and the classes of each task, and simulates an *exact* split-conformal calibration with
those sizes: the coverage of one fit given its ``n`` calibration images follows
Beta(r, n + 1 - r) with r = ceil(level * (n + 1)) (Vovk 2012), and the share covered among its
``test_per_class * classes`` test images is binomial around it. A task's number is the mean
over its fits, as in the study. Nothing here looks at the measured coverages: the output is
what a calibration with no flaw at all would give, to put the measured misses beside.

    python experiments/coverage_chance.py experiments/results/trust-z05-heldout-{1,2,3,4,5,6,7}.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def task_sizes(paths: list[Path]) -> dict[str, list[tuple[int, int]]]:
    """Per task, (calibration images, classes) of each fit in the files."""
    out: dict[str, list[tuple[int, int]]] = {}
    for path in paths:
        for row in json.loads(path.read_text(encoding="utf-8")):
            images = row["calibration"]["conformal"]["images"]
            out.setdefault(row["task"], []).append((int(images), int(row["classes"])))
    return out


def simulate(fits: list[tuple[int, int]], *, level: float, test_per_class: int, draws: int,
             rng: np.random.Generator) -> np.ndarray:
    """``draws`` simulated task means of the fits' empirical coverages (exact split conformal)."""
    total = np.zeros(draws)
    for n, classes in fits:
        rank = math.ceil(level * (n + 1))
        conditional = rng.beta(rank, n + 1 - rank, size=draws)
        tests = test_per_class * classes
        total += rng.binomial(tests, conditional) / tests
    return total / len(fits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="trust_study.py --out files")
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--low", type=float, default=0.87)
    parser.add_argument("--high", type=float, default=0.95)
    parser.add_argument("--test-per-class", type=int, default=40, help="as in the trust study")
    parser.add_argument("--draws", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sizes = task_sizes(args.files)
    outside = []
    print(f"{'task':<22} {'fits':>4} {'n':>7} {'sd of mean':>10} {'P(outside)':>10}")
    misses = np.zeros(args.draws, dtype=np.int64)
    for task, fits in sizes.items():
        means = simulate(fits, level=args.level, test_per_class=args.test_per_class, draws=args.draws, rng=rng)
        miss = (means < args.low) | (means > args.high)
        misses += miss
        outside.append(float(miss.mean()))
        ns = sorted({n for n, _ in fits})
        print(f"{task:<22} {len(fits):>4} {'/'.join(map(str, ns)):>7} {means.std():>10.3f} {outside[-1]:>10.3f}")
    counts = np.bincount(misses, minlength=len(sizes) + 1) / args.draws
    expected = sum(outside)
    print(f"\ntasks: {len(sizes)}; expected outside {args.low} to {args.high} by chance alone: {expected:.1f} "
          f"(tasks independent); P(none outside) {counts[0]:.3f}")
    print("P(k outside): " + ", ".join(f"{k}: {p:.3f}" for k, p in enumerate(counts[:10])))
    print(f"P(at least 7 outside): {counts[7:].sum():.3f}")


if __name__ == "__main__":
    main()

"""Tables and goal checks of issue 11 from stored benchmark results.

Reads the per-job JSON files of one or more `biomedvr benchmark --out` folders and prints, per
shot count, test accuracy (mean ± std over seeds) of each method on each dataset, then the
goal checks for the default method against attribute zero-shot, the linear probe and the
published baselines that are present. Jobs that record the test accuracy of their untrained
start (the VR methods as published) add a row "METHOD (untrained start)". With several folders the checks pool every task of every
folder (each task's seeds averaged first):

    python experiments/goal_table.py experiments/results/heldout [more folders ...]

When two folders hold the same method (an earlier design's run and the current one), name the
earlier one apart: ``--rename experiments/results/heldout:biomedvr=biomedvr-run1``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

BASELINES = ("ar", "attrvr", "biomedvr-paper")


def load(folders: list[Path], renames: dict[tuple[Path, str], str]) -> dict[tuple[str, str, int], list[float]]:
    """(dataset, method, shots) -> test accuracies in % (zero-shot rows have shots 0)."""
    acc: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for folder in folders:
        for path in sorted((folder / "jobs").glob("*.json")):
            job = json.loads(path.read_text(encoding="utf-8"))
            method = renames.get((folder.resolve(), job["method"]), job["method"])
            acc[(job["dataset"], method, int(job["shots"]))].append(100 * job["metrics"]["accuracy"])
            if job.get("start_accuracy") is not None:  # VR methods as published: their untrained start, a row of its own
                acc[(job["dataset"], f"{method} (untrained start)", int(job["shots"]))].append(100 * job["start_accuracy"])
    return acc


def parse_renames(items: list[str]) -> dict[tuple[Path, str], str]:
    """``FOLDER:METHOD=NEW`` items -> {(folder, method): new name}."""
    renames = {}
    for item in items:
        where, _, new = item.partition("=")
        folder, _, method = where.rpartition(":")
        if not (folder and method and new):
            raise SystemExit(f"--rename wants FOLDER:METHOD=NEW, got {item!r}")
        renames[(Path(folder).resolve(), method)] = new
    return renames


def mean(values: list[float]) -> float:
    return statistics.mean(values)


def cell(values: list[float] | None) -> str:
    if not values:
        return ""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0  # sample std, as the benchmark reports
    return f"{mean(values):.1f} ± {spread:.1f}"


def tables(acc, datasets: list[str], methods: list[str], shots: list[int]) -> None:
    for k in shots:
        print(f"\n**{k} shot(s) per class** (test accuracy %, mean ± sample std over seeds)\n")
        print("| method | " + " | ".join(datasets) + " | mean |")
        print("|---" * (len(datasets) + 2) + "|")
        for method in methods:
            rows = [acc.get((d, method, 0 if method.startswith("zs-") else k)) for d in datasets]
            if not any(rows):
                continue
            overall = mean([mean(r) for r in rows]) if all(rows) else None
            print(f"| {method} | " + " | ".join(cell(r) for r in rows) + f" | {'' if overall is None else f'{overall:.1f}'} |")


def goals(acc, datasets: list[str], shots: list[int], method: str) -> None:
    baselines = [b for b in BASELINES if any(m == b for _, m, _ in acc)]
    print(f"\n**Goal checks for `{method}`** (means over seeds; differences in points)\n")
    print("| K | worst vs zs-attributes | mean vs linear-probe | worst vs linear-probe | tasks > 1 below zs-attributes "
          "| tasks > 2 below linear-probe | 95% interval of the mean vs linear-probe |"
          + "".join(f" mean vs {b} |" for b in baselines))
    print("|---" * (7 + len(baselines)) + "|")
    for k in shots:
        ours = {d: mean(acc[(d, method, k)]) for d in datasets if acc.get((d, method, k))}
        zs = {d: mean(acc[(d, "zs-attributes", 0)]) for d in ours if acc.get((d, "zs-attributes", 0))}
        probe = {d: mean(acc[(d, "linear-probe", k)]) for d in ours if acc.get((d, "linear-probe", k))}
        worst_zs = min(ours[d] - zs[d] for d in zs) if zs else None
        mean_probe = mean([ours[d] - probe[d] for d in probe]) if probe else None
        worst_probe = min(ours[d] - probe[d] for d in probe) if probe else None
        cells = []
        for base in baselines:
            theirs = {d: mean(acc[(d, base, k)]) for d in ours if acc.get((d, base, k))}
            cells.append(f"{mean([ours[d] - theirs[d] for d in theirs]):+.1f}" if len(theirs) == len(ours) else "")
        fmt = lambda v: "" if v is None else f"{v:+.1f}"  # noqa: E731
        below_zs = sum(ours[d] - zs[d] < -1 for d in zs) if zs else None
        below_probe = sum(ours[d] - probe[d] < -2 for d in probe) if probe else None
        counts = f" {'' if below_zs is None else f'{below_zs} of {len(zs)}'} | " \
                 f"{'' if below_probe is None else f'{below_probe} of {len(probe)}'} | {interval([ours[d] - probe[d] for d in probe])} |"
        print(f"| {k} | {fmt(worst_zs)} | {fmt(mean_probe)} | {fmt(worst_probe)} |{counts}" + "".join(f" {c} |" for c in cells))


def interval(differences: list[float]) -> str:
    """95% t-interval of the mean difference, tasks as the units (seeds averaged within a task first)."""
    if len(differences) < 2:
        return ""
    from scipy.stats import t

    half = t.ppf(0.975, len(differences) - 1) * statistics.stdev(differences) / len(differences) ** 0.5
    centre = mean(differences)
    return f"{centre - half:+.1f} to {centre + half:+.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--method", default="biomedvr", help="the method whose goals are checked")
    parser.add_argument("--rename", action="append", default=[], metavar="FOLDER:METHOD=NEW",
                        help="read METHOD from FOLDER under another name (repeatable)")
    args = parser.parse_args()
    acc = load(args.folders, parse_renames(args.rename))
    datasets = sorted({d for d, _, _ in acc}, key=lambda d: (d.split(" +")[0], d))
    order = ["zs-attributes", "linear-probe", *BASELINES, "ar-fast", "attrvr-fast", args.method]
    methods = [m for m in dict.fromkeys(order + sorted({m for _, m, _ in acc})) if any(k[1] == m for k in acc)]
    shots = sorted({k for _, m, k in acc if k > 0})
    tables(acc, datasets, methods, shots)
    goals(acc, datasets, shots, args.method)


if __name__ == "__main__":
    main()

"""The published methods against the default, one row per held-out set (docs/results.md).

Each argument names a set's stored runs as ``LABEL=FOLDER[,FOLDER...]`` (the published-methods
run and the default's run on the same seeds and images). ``FOLDER@M1+M2`` reads only those
methods from a folder (zero-shot and the probe from a run whose ``biomedvr`` is an earlier
default, say). Prints, at one shot count, each
method's mean test accuracy over the set's tasks, then every task where a method other than
the probe is above the default:

    python experiments/published_summary.py 3=experiments/results/v2-heldout-3-published,experiments/results/v2-heldout-3-z05
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

METHODS = ("zs-attributes", "linear-probe", "coop", "ar", "attrvr", "biomedvr-paper", "biomedvr")


def task_means(folders: list[str], shots: int) -> dict[str, dict[str, float]]:
    """dataset -> method -> mean test accuracy (%) over seeds at ``shots`` (zero-shot at any)."""
    runs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for spec in folders:
        folder, _, only = spec.partition("@")
        wanted = set(only.split("+")) if only else set(METHODS)
        for path in sorted((Path(folder) / "jobs").glob("*.json")):
            job = json.loads(path.read_text(encoding="utf-8"))
            if job["method"] in METHODS and job["method"] in wanted and int(job["shots"]) in (0, shots):
                runs[(job["dataset"], job["method"])].append(100 * job["metrics"]["accuracy"])
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (dataset, method), values in runs.items():
        out[dataset][method] = statistics.mean(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", help="LABEL=FOLDER[,FOLDER...]")
    parser.add_argument("--shots", type=int, default=16)
    args = parser.parse_args()
    print(f"| set | tasks | {' | '.join(METHODS)} |")
    print("|---|---|" + "---|" * len(METHODS))
    beaten: list[str] = []
    for item in args.sets:
        label, _, folders = item.partition("=")
        means = task_means(folders.split(","), args.shots)
        cells = []
        for method in METHODS:
            values = [m[method] for m in means.values() if method in m]
            cells.append(f"{statistics.mean(values):.1f}" if len(values) == len(means) else "-")
        print(f"| {label} | {len(means)} | {' | '.join(cells)} |")
        for dataset, m in sorted(means.items()):
            for method in ("coop", "ar", "attrvr", "biomedvr-paper"):
                if method in m and "biomedvr" in m and m[method] > m["biomedvr"]:
                    beaten.append(f"set {label}, {dataset}: {method} {m[method]:.1f} against {m['biomedvr']:.1f}")
    print("\nTasks where a published method is above the default:")
    print("\n".join(f"- {line}" for line in beaten) or "- none")


if __name__ == "__main__":
    main()

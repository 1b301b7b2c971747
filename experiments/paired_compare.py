"""A candidate method against the default on the same jobs (datasets, shots, seeds) of benchmark folders.

Prints per shot count the mean of each over every (dataset, seed) cell both have, the mean
difference, how many cells differ and by how much at worst and best, then per dataset the mean
difference over seeds, and which cells the candidate's VR stage kept a trained epoch in (and
the default's). Used for the choice rules written into held-out READMEs before design runs.

    python experiments/paired_compare.py experiments/results/v2-design-strict-vr/builtin \\
        experiments/results/v2-design-strict-vr/design --candidate biomedvr-strict-vr

Runs of one method at two times are told apart as in goal_table.py:
``--rename experiments/results/v2-heldout-2-hd:biomedvr=before``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from goal_table import parse_renames


def load(folders: list[Path], methods: tuple[str, str],
         renames: dict[tuple[Path, str], str]) -> dict[tuple[str, int, int], dict[str, dict]]:
    """(dataset, shots, seed) -> method -> job record, for the two methods (after renaming)."""
    cells: dict[tuple[str, int, int], dict[str, dict]] = defaultdict(dict)
    for folder in folders:
        for path in sorted((folder / "jobs").glob("*.json")):
            job = json.loads(path.read_text(encoding="utf-8"))
            job["method"] = renames.get((folder.resolve(), job["method"]), job["method"])
            if job["method"] in methods:
                cells[(job["dataset"], int(job["shots"]), int(job["seed"]))][job["method"]] = job
    return {key: jobs for key, jobs in cells.items() if len(jobs) == 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--default", default="biomedvr")
    parser.add_argument("--rename", action="append", default=[], metavar="FOLDER:METHOD=NEW")
    args = parser.parse_args()
    cells = load(args.folders, (args.candidate, args.default), parse_renames(args.rename))

    def accuracy(job: dict) -> float:
        return 100 * job["metrics"]["accuracy"]

    for shots in sorted({k for _, k, _ in cells}):
        mine = {key: jobs for key, jobs in cells.items() if key[1] == shots}
        diffs = [accuracy(j[args.candidate]) - accuracy(j[args.default]) for j in mine.values()]
        print(f"K={shots}: {len(diffs)} cells, default {statistics.mean(accuracy(j[args.default]) for j in mine.values()):.2f}, "
              f"candidate {statistics.mean(accuracy(j[args.candidate]) for j in mine.values()):.2f}, "
              f"difference {statistics.mean(diffs):+.2f}; cells that differ {sum(abs(d) > 1e-9 for d in diffs)}, "
              f"worst {min(diffs):+.1f}, best {max(diffs):+.1f}")
        by_task: dict[str, list[float]] = defaultdict(list)
        for (dataset, _, _), jobs in mine.items():
            by_task[dataset].append(accuracy(jobs[args.candidate]) - accuracy(jobs[args.default]))
        for dataset, values in sorted(by_task.items()):
            if any(abs(v) > 1e-9 for v in values):
                print(f"  {dataset}: {statistics.mean(values):+.2f} over {len(values)} seeds")
        for (dataset, _, seed), jobs in sorted(mine.items()):
            kept = [m for m in (args.default, args.candidate) if (jobs[m].get("selected_epoch") or 0) > 0]
            if kept:
                print(f"  VR epoch kept: {dataset} seed {seed} by {', '.join(kept)}")


if __name__ == "__main__":
    main()

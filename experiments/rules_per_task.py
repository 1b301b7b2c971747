"""Per-task means (over seeds) of head_gate_study.py's rules, read from the study's printed log.

The goals of issue #17 are per task (each task's seeds averaged first); the study's own table is
per cell. This reads the lines ``TASK K=k sS: zs .. probe .. RULE acc ...`` that the study prints
and reports, for each K and each rule named, every task's mean against the probe, and the count
of tasks more than 1 point below zero-shot and more than 2 below the probe.

    python experiments/rules_per_task.py experiments/results/head-tempered-design.log \\
        --rules "current,no-test log-loss,pseudo-BMA uniform,oracle (test)"
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import defaultdict
from pathlib import Path

CELL = re.compile(r"(.+) K=(\d+) s(\d+): (.*)")
SCORE = re.compile(r"(.+?) (\d\.\d{3})(?: |$)")


def read_cells(log: Path) -> dict[tuple[str, int], dict[str, list[float]]]:
    """(task, K) -> name -> accuracies over seeds (``zs``, ``probe`` and every rule)."""
    rows: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in log.read_text().splitlines():
        match = CELL.match(line.strip())
        if match:
            for name, value in SCORE.findall(match.group(4)):
                rows[(match.group(1), int(match.group(2)))][name.strip()].append(float(value))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--rules", default="current,oracle (test)", help="comma-separated rule names as printed")
    args = parser.parse_args()
    rows, rules = read_cells(args.log), args.rules.split(",")
    for shots in sorted({k for _, k in rows}):
        print(f"K={shots}")
        totals: dict[str, list] = {rule: [0, 0, []] for rule in rules}
        for (task, k), scores in rows.items():
            if k != shots:
                continue
            zs, probe = statistics.mean(scores["zs"]), statistics.mean(scores["probe"])
            line = f"  {task:28s} zs {100 * zs:5.1f} probe {100 * probe:5.1f}"
            for rule in rules:
                mean = statistics.mean(scores[rule])
                line += f" | {rule} {100 * (mean - probe):+5.1f}"
                totals[rule][0] += mean - zs < -0.01
                totals[rule][1] += mean - probe < -0.02
                totals[rule][2].append(100 * (mean - probe))
            print(line)
        for rule, (below_zs, below_probe, versus) in totals.items():
            print(f"  {rule}: tasks >1 below zs {below_zs}, >2 below probe {below_probe}, "
                  f"mean vs probe {statistics.mean(versus):+.2f}")


if __name__ == "__main__":
    main()

"""Fit time of this checkout against another source tree, side by side on the same data.

Alternates `biomedvr fit` runs of the two trees (A B A B ...) on one sandbox dataset so that
load changes hit both alike, and prints each run's time as `fit` reports it (training and
selection, without start-up and decoding) and the ratio of the medians. The other tree is any
checkout, e.g. the previous default:

    git worktree add /tmp/previous 86ce7d2
    OMP_NUM_THREADS=2 python experiments/fit_time.py --other /tmp/previous --shots 16 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
# The previous layout had the app at biomedvr_cli.app; this one at biomedvr_cli.cli.app.
ENTRY = "import sys; sys.argv[0] = 'biomedvr'; " \
        "exec('try:\\n from biomedvr_cli.cli.app import main\\nexcept ImportError:\\n from biomedvr_cli.app import main'); main()"


def run_fit(tree: Path, data: Path, out: Path, shots: int, task_seed: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-c", ENTRY, "fit", str(data), "--shots", str(shots), "--backbone", "sandbox",
           "--seed", str(task_seed), "--device", "cpu", "--out", str(out), "--force", "--json"]
    # cwd is the data's folder: `python -c` puts the cwd first on sys.path, ahead of PYTHONPATH.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=data.parent)
    return float(json.loads(done.stdout)["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, required=True, help="the other source tree (a checkout)")
    parser.add_argument("--task", default="blood-smear")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        subprocess.run([sys.executable, "-c", ENTRY, "sandbox", "make", str(data), "--task", args.task,
                        "--train-per-class", str(args.shots + 4), "--test-per-class", "0", "--shift", "default",
                        "--seed", "0"], env={**os.environ, "PYTHONPATH": str(HERE)}, check=True, capture_output=True, cwd=tmp)
        times: dict[str, list[float]] = {"this": [], "other": []}
        for run in range(args.runs):
            for name, tree in (("this", HERE), ("other", args.other.resolve())):
                seconds = run_fit(tree, data, Path(tmp) / f"{name}.safetensors", args.shots, run)
                times[name].append(seconds)
                print(f"run {run} {name:5s} {seconds:7.1f} s", flush=True)
    this, other = statistics.median(times["this"]), statistics.median(times["other"])
    print(f"median: this {this:.1f} s, other {other:.1f} s, ratio {this / other:.2f}")


if __name__ == "__main__":
    main()

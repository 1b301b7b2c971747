"""Startup time of `biomedvr --help` and `--version` (goal: under 0.5 s; torch is never imported).

    .venv/bin/python experiments/startup.py --runs 10
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    exe = shutil.which("biomedvr") or str(sys.executable)
    base = [exe] if exe.endswith("biomedvr") else [exe, "-m", "biomedvr_cli"]
    for extra in (["--help"], ["--version"]):
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run(base + extra, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        print(f"biomedvr {extra[0]:10s} median {statistics.median(times):.3f} s  min {min(times):.3f} s  ({args.runs} runs)")


if __name__ == "__main__":
    main()

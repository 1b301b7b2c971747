"""How many fits of a benchmark method would skip the VR stage at a given ``clear_z``.

The stage is skipped when the untrained start gets ``clear_z`` squared or fewer validation images
wrong (then no trained epoch could pass the check; method/vr_stopping.py). Read from each job's
recorded validation accuracy of the kept state, which is the start's where no epoch was kept:

    python experiments/vr_skip_share.py experiments/results/v2-heldout-11 --method biomedvr --clear-z 3
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--method", default="biomedvr")
    parser.add_argument("--clear-z", type=float, default=3.0)
    args = parser.parse_args()
    fits, skipped, kept = Counter(), Counter(), Counter()
    for folder in args.folders:
        for path in sorted((folder / "jobs").glob("*.json")):
            job = json.loads(path.read_text(encoding="utf-8"))
            if job["method"] != args.method or not job.get("val_images"):
                continue
            shots = int(job["shots"])
            fits[shots] += 1
            if (job.get("selected_epoch") or 0) > 0:
                kept[shots] += 1
                continue
            wrong = round((1 - job["val_accuracy"]) * job["val_images"])
            skipped[shots] += wrong <= args.clear_z**2
    for shots in sorted(fits):
        print(f"K={shots}: {fits[shots]} fits, the VR stage skipped at clear_z {args.clear_z:g} in {skipped[shots]} "
              f"({100 * skipped[shots] / fits[shots]:.0f}%), a trained epoch kept in {kept[shots]}")


if __name__ == "__main__":
    main()

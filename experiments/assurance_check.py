"""How often an adapter's own coverage reaches the level, at the level and at the assured level.

Reads the adapters and datasets that ``experiments/trust_study.py`` left in its work folders
(``<task>-s<seed>-k<K>.safetensors`` beside ``<task>-s<seed>/``), and evaluates each adapter's
prediction sets on its test images twice: at ``--level`` and at the level that
``conformal.assured_level`` gives for the adapter's calibration images (``biomedvr info`` shows
it), which asks that the adapter's own coverage reach ``--level`` with probability
``--assurance``. Prints, for both, the share of fits whose coverage reaches the level and the
mean set size over the classes. Runs nothing but ``eval``:

    OMP_NUM_THREADS=1 python experiments/assurance_check.py /tmp/trustll-1 /tmp/trustll-2 --level 0.9 --assurance 0.9
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    from biomedvr_cli.method.conformal import assured_level
    from biomedvr_cli.pipeline.evaluate import evaluate_adapter
    from biomedvr_cli.pipeline.predictor import load_predictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+", type=Path)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--assurance", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=None, help="write every fit's row as JSON here")
    args = parser.parse_args()
    rows = []
    for workdir in args.workdirs:
        for adapter in sorted(workdir.glob("*-s*-k*.safetensors")):
            data = workdir / adapter.name.rsplit("-k", 1)[0]
            predictor = load_predictor(adapter, device="cpu")
            part = predictor.calibration.conformal
            if part is None or not (data / "test").is_dir():
                continue
            assured = assured_level(part.images, args.level, args.assurance)
            row = {"fit": adapter.stem, "method": part.method, "images": part.images, "assured_level": assured}
            for name, level in (("plain", args.level), ("assured", assured)):
                if level is None:
                    continue
                metrics = evaluate_adapter(data, adapter, predictor=predictor, coverage=level)["metrics"]
                row[name] = {"coverage": metrics["coverage"], "size_ratio": metrics["mean_set_size"] / len(predictor.classes)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for name in ("plain", "assured"):
        mine = [r[name] for r in rows if name in r]
        if mine:
            reached = sum(m["coverage"] >= args.level for m in mine)
            print(f"{name}: {reached} of {len(mine)} fits reach coverage {args.level} "
                  f"({100 * reached / len(mine):.0f}%); mean coverage {statistics.fmean(m['coverage'] for m in mine):.3f}; "
                  f"mean set size / classes {statistics.fmean(m['size_ratio'] for m in mine):.3f}")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

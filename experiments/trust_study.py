"""Study of prediction sets and the outlier flag on sandbox tasks (docs/trust.md).

For each task (a built-in name or a task JSON file) and seed: makes the dataset with
``biomedvr sandbox make``, fits the default method at K shots on the sandbox backbone, and
reports on the test images the coverage and mean set size at the level, and the outlier AUROC
against (a) real images of another kind (BreastMNIST ultrasound from ../shared/real, skipped
when absent) and (b) the test cells of another sandbox task (``--other-task``, else the next
task in the list).

    OMP_NUM_THREADS=1 python experiments/trust_study.py --tasks blood-smear cervical-cytology \\
        --seeds 0 1 2 --workdir /tmp/trust-study --out experiments/results/trust-study.json   # task default shifts

The goals (issue #18): mean coverage at 0.9 within 0.87 to 0.95 on every held-out task, mean set
size at most 0.6 x the number of classes, outlier AUROC at least 0.95 against real images.

``--streams per-task`` gives each task its own random images: the dataset of seed ``s`` is made
with ``s + 1000 * (1 + crc32(task name) % 997)`` instead of ``s`` (the fit still draws with
``s``). With ``shared`` (the default, every run before 2026-12-07) every task's images of one
seed come from the same random stream, so a draw that happens to make the labelled images
easier than the test images does so on many tasks at once (docs/trust.md).

``--summarize FILE ...`` runs nothing: it reads earlier ``--out`` files and prints the table and
the goal checks pooled over every task in them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import zlib
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "breastmnist.npz"


def make_dataset(task: str, out: Path, *, seed: int, train: int, test: int, shift: str = "default") -> Path:
    """``biomedvr sandbox make`` for a built-in task name or a task file (reused when already made)."""
    if (out / "attributes.json").is_file():
        return out
    which = ["--task-file", task] if task.endswith(".json") else ["--task", task]
    subprocess.run([sys.executable, "-m", "biomedvr_cli", "sandbox", "make", str(out), *which, "--train-per-class",
                    str(train), "--test-per-class", str(test), "--seed", str(seed), "--shift", shift, "--force"], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def real_images(out: Path, count: int) -> Path | None:
    """The first ``count`` BreastMNIST test images as PNGs (None when ../shared/real is absent)."""
    if not REAL.is_file():
        return None
    import numpy as np
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    images = np.load(REAL, allow_pickle=False)["test_images"][:count]
    for i, image in enumerate(images):
        path = out / f"breast-{i:03d}.png"
        if not path.exists():
            Image.fromarray(image).convert("RGB").save(path)
    return out


def data_seed(name: str, seed: int, streams: str) -> int:
    """The seed the task's dataset is made with (see ``--streams`` in the module docstring)."""
    if streams == "shared":
        return seed
    return seed + 1000 * (1 + zlib.crc32(name.encode("utf-8")) % 997)


def run_one(task: str, other: str | None, seed: int, args: argparse.Namespace, real: Path | None) -> dict:
    """Fit one task at one seed and measure sets and outlier flags on its test images."""
    from biomedvr_cli.pipeline.evaluate import evaluate_adapter
    from biomedvr_cli.pipeline.fit import FitRequest, fit_adapter
    from biomedvr_cli.pipeline.predictor import load_predictor

    name = Path(task).stem if task.endswith(".json") else task
    data = make_dataset(task, args.workdir / f"{name}-s{seed}", seed=data_seed(name, seed, args.streams),
                        train=args.train_per_class, test=args.test_per_class, shift=args.shift)
    adapter = args.workdir / f"{name}-s{seed}-k{args.shots}.safetensors"
    fit_adapter(FitRequest(images=data, shots=args.shots, out=adapter, attributes=data / "attributes.json",
                           backbone="sandbox", seed=seed, device=args.device, force=True))
    predictor = load_predictor(adapter, device=args.device)
    row = {"task": name, "seed": seed, "data_seed": data_seed(name, seed, args.streams), "shots": args.shots,
           "classes": len(predictor.classes),
           "calibration": predictor.adapter.config.calibration}
    report = evaluate_adapter(data, adapter, predictor=predictor, coverage=args.level, outliers=real)
    metrics = report["metrics"]
    row.update({k: metrics.get(k) for k in ("accuracy", "coverage", "mean_set_size", "outlier_auroc",
                                            "inliers_flagged", "outliers_flagged")})
    row["size_ratio"] = metrics["mean_set_size"] / row["classes"]
    if other is not None:
        other_name = Path(other).stem if other.endswith(".json") else other
        other_data = make_dataset(other, args.workdir / f"{other_name}-s{seed}", seed=data_seed(other_name, seed, args.streams),
                                  train=args.train_per_class, test=args.test_per_class, shift=args.shift)
        cells = evaluate_adapter(data, adapter, predictor=predictor, outliers=other_data / "test")["metrics"]
        row["other_task"], row["other_task_auroc"] = other_name, cells["outlier_auroc"]
    return row


def summary(rows: list[dict], level: float) -> list[str]:
    """One line per task: means over seeds."""
    lines = [f"{'task':<22} {'n':>2} {'acc':>6} {'cov@' + format(level, 'g'):>8} {'size/C':>7} {'AUROC real':>10} "
             f"{'AUROC other':>11}"]
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]

        def mean(key: str) -> str:
            values = [r[key] for r in mine if r.get(key) is not None]
            return f"{statistics.fmean(values):.3f}" if values else "-"

        lines.append(f"{task:<22} {len(mine):>2} {mean('accuracy'):>6} {mean('coverage'):>8} {mean('size_ratio'):>7} "
                     f"{mean('outlier_auroc'):>10} {mean('other_task_auroc'):>11}")
    return lines


def goal_checks(rows: list[dict], low: float = 0.87, high: float = 0.95) -> list[str]:
    """The issue's goals pooled over every task of ``rows`` (each task's seeds averaged first)."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))

    def per_task(key: str) -> list[float]:
        return [statistics.fmean(r[key] for r in rows if r["task"] == t and r.get(key) is not None) for t in tasks]

    coverage, size = per_task("coverage"), per_task("size_ratio")
    inside = sum(low <= c <= high for c in coverage)
    fits = [r["coverage"] for r in rows]
    lines = [f"tasks: {len(tasks)}, fits: {len(rows)} "
             f"({sum(r['calibration'].get('conformal', {}).get('method') == 'split' for r in rows)} split conformal, "
             f"{sum(bool(r['calibration'].get('conformal', {}).get('caveat')) for r in rows)} with the VR caveat)",
             f"coverage within {low} to {high}: {inside} of {len(tasks)} tasks; mean over fits {statistics.fmean(fits):.3f}, "
             f"one fit {min(fits):.3f} to {max(fits):.3f}",
             f"mean set size / classes: {min(size):.3f} to {max(size):.3f} over tasks"]
    for method in ("split", "cv+"):  # the spread of one fit's coverage, by how the fit was calibrated
        mine = [r["coverage"] for r in rows if r["calibration"].get("conformal", {}).get("method") == method]
        if len(mine) > 1:
            lines.append(f"{method} fits: {len(mine)}, coverage mean {statistics.fmean(mine):.3f}, "
                         f"sd {statistics.stdev(mine):.3f}, lowest {min(mine):.3f}")
    if all(r.get("outlier_auroc") is not None for r in rows):
        real = per_task("outlier_auroc")
        flagged = [r["inliers_flagged"] for r in rows]
        lines.append(f"outlier AUROC against real images: {min(real):.3f} to {max(real):.3f} over tasks, "
                     f"{sum(a >= 0.95 for a in real)} of {len(tasks)} at least 0.95; test cells flagged "
                     f"{100 * statistics.fmean(flagged):.1f}% on average, at most {100 * max(flagged):.1f}% in a fit")
    if all(r.get("other_task_auroc") is not None for r in rows):
        other = per_task("other_task_auroc")
        lines.append(f"outlier AUROC against another sandbox task: {min(other):.3f} to {max(other):.3f}")
    return lines


def summarize(paths: list[Path], level: float) -> None:
    """Print the table and the pooled goal checks of earlier ``--out`` files."""
    rows = [row for path in paths for row in json.loads(path.read_text(encoding="utf-8"))]
    print("\n".join(summary(rows, level) + [""] + goal_checks(rows)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summarize", nargs="+", type=Path, default=None, metavar="FILE",
                        help="run nothing; print the table and pooled goal checks of earlier --out files")
    parser.add_argument("--tasks", nargs="+", help="built-in task names or task JSON files")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--shift", default="default",
                        help="shift of train and test images: the task's default (as the held-out suites), or none ...")
    parser.add_argument("--streams", choices=("shared", "per-task"), default="shared",
                        help="random images per seed shared by every task (as before), or each task its own")
    parser.add_argument("--train-per-class", type=int, default=24)
    parser.add_argument("--test-per-class", type=int, default=40)
    parser.add_argument("--other-task", default=None,
                        help="task whose test cells serve as outliers (default: the next task in --tasks)")
    parser.add_argument("--real-images", type=int, default=100, help="BreastMNIST test images used as outliers")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write every row as JSON here")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize, args.level)
        return
    if not args.tasks or args.workdir is None:
        parser.error("--tasks and --workdir are required unless --summarize is given")
    args.workdir.mkdir(parents=True, exist_ok=True)
    real = real_images(args.workdir / "real-breastmnist", args.real_images)
    if real is None:
        print(f"note: {REAL} is absent; no AUROC against real images", file=sys.stderr)
    rows = []
    for i, task in enumerate(args.tasks):
        other = args.other_task or (args.tasks[(i + 1) % len(args.tasks)] if len(args.tasks) > 1 else None)
        for seed in args.seeds:
            rows.append(run_one(task, other, seed, args, real))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "calibration"}), file=sys.stderr)
    print("\n".join(summary(rows, args.level)))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

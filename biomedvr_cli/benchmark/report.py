"""Aggregation over seeds and the report files: summary rows, CSV, Markdown, PNG plot.

Every number in the table, the JSON, the CSV and the Markdown comes from the same
summary rows, so they always agree. Means and standard deviations are over seeds
(sample std, ``ddof=1``; 0 for a single seed). Table cells show percentages with one
decimal; JSON and CSV keep fractions.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from biomedvr_cli.atomic import atomic_path, refuse_folder_with_inputs, refuse_input_as_output, signals_deferred
from biomedvr_cli.data.files import spreadsheet_safe
from biomedvr_cli.errors import UsageError

# The report files a benchmark writes in its --out folder (besides jobs/), by key.
REPORT_FILES = {"summary_json": "summary.json", "summary_csv": "summary.csv", "jobs_csv": "jobs.csv",
                "summary_md": "summary.md", "plot": "accuracy_vs_shots.png"}

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "ece")
EXTRA = ("nll", "auroc_ovr")
LABELS = {"accuracy": "acc %", "balanced_accuracy": "bal. acc %", "macro_f1": "macro-F1 %", "ece": "ECE %"}


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def summarize(results: list[dict[str, Any]], order: list[tuple[str, str, int]] | None = None) -> list[dict[str, Any]]:
    """One row per (dataset, method, shots): mean and std of each metric over seeds, mean fit seconds."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["dataset"], r["method"], int(r["shots"])), []).append(r)
    keys = [k for k in (order or []) if k in groups] + [k for k in groups if k not in set(order or [])]
    rows = []
    for dataset, method, shots in keys:
        items = sorted(groups[(dataset, method, shots)], key=lambda r: r["seed"])
        row: dict[str, Any] = {"dataset": dataset, "method": method, "shots": shots,
                               "seeds": [r["seed"] for r in items], "n": len(items)}
        for metric in HEADLINE + EXTRA:
            mean, std = _mean_std([r["metrics"].get(metric) for r in items])
            row[metric] = {"mean": mean, "std": std}
        row["fit_seconds"] = _mean_std([r["fit_seconds"] for r in items])[0]
        rows.append(row)
    return rows


def pct(stat: dict[str, float | None]) -> str:
    """``{"mean": 0.8123, "std": 0.0211}`` -> ``"81.2 ± 2.1"`` (the table's cell format)."""
    if stat["mean"] is None:
        return "-"
    return f"{100 * stat['mean']:.1f} ± {100 * (stat['std'] or 0.0):.1f}"


def _shots_label(shots: int) -> str:
    return "0 (zero-shot)" if shots == 0 else str(shots)


def best_rows(rows: list[dict[str, Any]]) -> set[int]:
    """Indices of the rows with the highest mean accuracy per (dataset, shots); zero-shot rows count for every shots."""
    best: set[int] = set()
    datasets = dict.fromkeys(r["dataset"] for r in rows)
    for dataset in datasets:
        in_ds = [(i, r) for i, r in enumerate(rows) if r["dataset"] == dataset]
        for shots in sorted({r["shots"] for _, r in in_ds if r["shots"] > 0}):
            cands = [(i, r) for i, r in in_ds if r["shots"] in (0, shots) and r["accuracy"]["mean"] is not None]
            if cands:
                top = max(r["accuracy"]["mean"] for _, r in cands)
                best.update(i for i, r in cands if r["accuracy"]["mean"] == top)
    return best


FIXED_COLOURS = {"biomedvr": "black", "biomedvr-paper": "dimgray"}
COLOUR_ORDER = list(range(0, 20, 2)) + list(range(1, 20, 2))  # distinct hues first, their light shades after

TABLE_COLUMNS = ["dataset", "method", "shots", "seeds", *(LABELS[m] for m in HEADLINE), "fit s"]


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Cells of the human table (same order as TABLE_COLUMNS)."""
    return [[r["dataset"], r["method"], _shots_label(r["shots"]), str(r["n"]), *(pct(r[m]) for m in HEADLINE),
             f"{r['fit_seconds']:.1f}" if r["fit_seconds"] is not None else "-"] for r in rows]


def csv_text(rows: list[dict[str, Any]]) -> str:
    """summary.csv: means and stds as fractions."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    metrics = HEADLINE + EXTRA
    writer.writerow(["dataset", "method", "shots", "seeds", *[f"{m}_{s}" for m in metrics for s in ("mean", "std")],
                     "fit_seconds_mean"])
    for r in rows:
        cells = [spreadsheet_safe(r["dataset"]), spreadsheet_safe(r["method"]), r["shots"], r["n"]]
        for m in metrics:
            cells += ["" if r[m]["mean"] is None else f"{r[m]['mean']:.6f}", "" if r[m]["std"] is None else f"{r[m]['std']:.6f}"]
        cells.append("" if r["fit_seconds"] is None else f"{r['fit_seconds']:.3f}")
        writer.writerow(cells)
    return buffer.getvalue()


def jobs_csv_text(results: list[dict[str, Any]]) -> str:
    """jobs.csv: one row per (dataset, method, shots, seed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    metrics = HEADLINE + EXTRA
    writer.writerow(["dataset", "method", "shots", "seed", *metrics, "fit_seconds", "selected_epoch", "val_accuracy",
                     "train_images", "val_images", "test_images", "start_accuracy"])
    for r in results:
        m = r["metrics"]
        writer.writerow([spreadsheet_safe(r["dataset"]), spreadsheet_safe(r["method"]), r["shots"], r["seed"],
                         *["" if m.get(k) is None else f"{m[k]:.6f}" for k in metrics], f"{r['fit_seconds']:.3f}",
                         "" if r.get("selected_epoch") is None else r["selected_epoch"],
                         "" if r.get("val_accuracy") is None else f"{r['val_accuracy']:.6f}",
                         r["train_images"], r["val_images"], r["test_images"],
                         "" if r.get("start_accuracy") is None else f"{r['start_accuracy']:.6f}"])
    return buffer.getvalue()


def markdown_text(rows: list[dict[str, Any]]) -> str:
    """A Markdown table (best accuracy per dataset and shots in bold), ready for a README."""
    best = best_rows(rows)
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for i, cells in enumerate(table_rows(rows)):
        if i in best:
            cells = [*cells[:4], f"**{cells[4]}**", *cells[5:]]
        lines.append("| " + " | ".join(_markdown_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown_cell(text: str) -> str:
    """A table cell that cannot split its row: a '|' in a dataset or method name is escaped."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def accuracy_figure(rows: list[dict[str, Any]]) -> Any:
    """The figure of accuracy_vs_shots.png: one panel per dataset, accuracy (mean ± std over seeds) against shots per method."""
    # The Agg canvas directly, no pyplot: a notebook's backend and figure list stay as they were.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cols = min(2, len(datasets))
    nrows = math.ceil(len(datasets) / cols)
    panel_w, legend_w = 6.0, 2.1
    width = panel_w * cols + legend_w
    fig = Figure(figsize=(width, 4.2 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, cols, squeeze=False)
    cmap = colormaps["tab20"]
    all_shots = sorted({r["shots"] for r in rows if r["shots"] > 0}) or [1]
    for ax, dataset in zip(axes.flat, datasets):
        for j, method in enumerate(methods):
            pts = sorted((r["shots"], r["accuracy"]["mean"], r["accuracy"]["std"]) for r in rows
                         if r["dataset"] == dataset and r["method"] == method and r["accuracy"]["mean"] is not None)
            if not pts:
                continue
            colour = FIXED_COLOURS.get(method) or cmap(COLOUR_ORDER[j % 20])
            if pts[0][0] == 0:  # zero-shot: a horizontal line across the shots
                ax.axhline(100 * pts[0][1], color=colour, linestyle="--", linewidth=1.2, label=method)
                continue
            xs = [p[0] for p in pts]
            main = method in ("biomedvr", "biomedvr-paper")
            ablation = method.startswith("biomedvr-") and not main
            ax.errorbar(xs, [100 * p[1] for p in pts], yerr=[100 * (p[2] or 0) for p in pts], marker="o", markersize=3,
                        capsize=2, linewidth=2.4 if main else 1.1, linestyle=":" if ablation else "-",
                        color=colour, label=method)
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_shots, [str(s) for s in all_shots])
        ax.set_xlabel("shots per class")
        ax.set_ylabel("test accuracy % (mean ± std over seeds)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(panel_w * cols / width, 0.5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, panel_w * cols / width, 1))
    return fig


def write_reports(out: Path, rows: list[dict[str, Any]], results: list[dict[str, Any]], document: dict[str, Any]) -> dict[str, Path]:
    """summary.json, summary.csv, jobs.csv, summary.md and (with a finished job) accuracy_vs_shots.png in ``out``.

    Every report (the plot too) is made and written to a temporary file before the first is
    renamed into place, and they are renamed together: an error, a full disk or Ctrl-C while they
    are made leaves the earlier set whole, never new summaries beside an old plot; Ctrl-C or
    SIGTERM during the renames waits until the last is done (a rename that fails, which no
    interrupt causes, can still leave some new beside some old). The paths written are returned.
    """
    from biomedvr_cli.benchmark.store import strict_json

    paths = {key: out / name for key, name in REPORT_FILES.items()}
    texts = {"summary_json": strict_json(document, indent=2), "summary_csv": csv_text(rows),
             "jobs_csv": jobs_csv_text(results), "summary_md": markdown_text(rows)}
    figure = accuracy_figure(rows) if rows else None
    with contextlib.ExitStack() as staged:  # an error or Ctrl-C while writing removes every temporary file
        for key, text in texts.items():
            staged.enter_context(atomic_path(paths[key], force=True)).write_bytes(text.encode("utf-8"))
        if figure is not None:
            figure.savefig(staged.enter_context(atomic_path(paths["plot"], force=True)), dpi=110, format="png")
        with signals_deferred():  # every file written: the renames, with Ctrl-C held until the last is done
            staged.close()
            if figure is None:  # no finished job: no plot, and none left from an earlier run to be taken for this one's
                paths.pop("plot").unlink(missing_ok=True)
    return paths


def check_out_folder(out: Path, image_folders: Iterable[Path], input_files: Iterable[Path]) -> None:
    """Refuse (exit 2), before any work, an ``--out`` folder whose reports would harm something.

    It may not be (or lie inside) an image folder of the run, its reports may not replace an
    input file (a manifest named ``jobs.csv``), and an existing folder with anything in it must
    be one a benchmark wrote (job files in ``jobs/``, or a benchmark ``summary.json``): its
    reports would replace files of the same names.
    """
    out = Path(out)
    refuse_folder_with_inputs(out, list(image_folders), [], option="--out")
    inputs = list(input_files)
    for name in REPORT_FILES.values():
        refuse_input_as_output(out / name, inputs)
    if not out.is_dir() or _holds_job_files(out / "jobs") or _is_benchmark_summary(out / "summary.json"):
        return
    # Locks and .DS_Store are not in the way, nor an empty jobs/ (a run killed before its first job was stored).
    theirs = sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and not _empty_jobs(p))
    if theirs:
        raise UsageError(f"--out folder {out.name} holds files no benchmark wrote ({theirs[0]}"
                         f"{f' and {len(theirs) - 1} more' if len(theirs) > 1 else ''}); its reports would replace "
                         "files of the same names", "choose a new or empty --out folder, or the one an earlier "
                                                    "benchmark wrote")


def _empty_jobs(path: Path) -> bool:
    try:
        return path.name == "jobs" and path.is_dir() and not any(path.iterdir())
    except OSError:
        return False


def _holds_job_files(jobs: Path) -> bool:
    """An earlier benchmark's ``jobs/`` (an empty one is removed when a run stops before its first job)."""
    try:
        return jobs.is_dir() and any(p.suffix == ".json" and p.is_file() for p in jobs.iterdir())
    except OSError:
        return False


def _is_benchmark_summary(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("benchmark"), dict) and "summary" in data

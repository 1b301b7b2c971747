"""``biomedvr benchmark``: methods x shots x seeds on one or more datasets, with baselines and ablations."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Optional

import typer

from biomedvr_cli.cli import csv_options, options

if TYPE_CHECKING:  # the runner imports torch; the command imports it only when it runs
    from biomedvr_cli.benchmark.runner import BenchmarkOutcome, BenchmarkRequest

HELP = """Compare BioMedVR with baselines and ablations on the same frozen backbone, shots and seeds.

One dataset: IMAGES (class-per-folder tree or CSV) with a test split, or --test IMAGES, and
--attributes FILE. Several: --suite FILE (JSON: {"datasets": [{"name": ..., "images": ...,
"test": ..., "attributes": ...} or {"name": ..., "sandbox_task": "blood-smear" or a task .json
file, "shift": "default"}], optional "backbone", "methods", "shots", "seeds", "epochs",
"epoch_scale", "val_shots"; relative paths are relative to the suite file; command-line
options win). The seed draws the support set; selection uses a
validation split, never the test set. Each finished (dataset, method, shots, seed) is stored
in --out/jobs at once: rerunning the command resumes. Writes summary.json, summary.csv,
jobs.csv, summary.md and accuracy_vs_shots.png to --out. Under torchrun the jobs are
sharded over the ranks and rank 0 writes the merged outputs.
"""


def _list_methods() -> None:
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.benchmark.methods import GROUPS, METHODS

    render.rows_table("benchmark methods", ["method", "what it is"], [[m.name, m.description] for m in METHODS.values()])
    render.rows_table("method groups", ["group", "methods"], [[g, ", ".join(ms)] for g, ms in GROUPS.items()])


def _print_table(outcome, title: str) -> None:
    from rich.table import Table

    from biomedvr_cli.cli import console as render
    from biomedvr_cli.benchmark.report import TABLE_COLUMNS, best_rows, table_rows

    table = Table(title=render.cell(title), title_justify="left")
    for col in TABLE_COLUMNS:
        table.add_column(render.cell(col), no_wrap=True, justify="left" if col in ("dataset", "method") else "right")
    best = best_rows(outcome.rows)
    previous = None
    for i, cells in enumerate(table_rows(outcome.rows)):
        if previous is not None and cells[0] != previous:
            table.add_section()
        previous = cells[0]
        row = [render.cell(c) for c in cells]  # dataset and method names are text, never markup
        if i in best:
            row[4].stylize("bold")
        table.add_row(*row)
    console = render.console
    if console.is_terminal:
        console.print(table)
        return
    # A pipe or log file gets the whole table rather than an 80-column squeeze.
    saved = console.width
    console.width = 200
    try:
        console.print(table)
    finally:
        console.width = saved


def benchmark(
    ctx: typer.Context,
    images: Optional[Path] = typer.Argument(None, help="Class-per-folder tree or CSV manifest (omit with --suite)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test images (default: the test split of IMAGES)."),
    attributes: Optional[Path] = typer.Option(None, "--attributes", help="Attributes JSON (default: attributes.json beside IMAGES)."),
    suite: Optional[Path] = typer.Option(None, "--suite", help="JSON file listing several datasets (and optional defaults)."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name in the reports (default: the IMAGES folder name)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Preset, hf-hub:ORG/REPO, local-dir:PATH, MODEL:TAG or MODEL:WEIGHTS (default biomedclip)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated methods or groups: all (default), baselines, ours, ablations; see --list-methods."),
    shots: Optional[str] = typer.Option(None, "--shots", help="Shots per class to sweep (default 1,2,4,8,16)."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Number of seeds, 0..N-1; each draws its own support set (default 3)."),
    out: Path = typer.Option(Path("benchmark-results"), "--out", "-o", help="Folder for per-job results and reports (resumable)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Train every trained method for this many epochs (tiny runs)."),
    epoch_scale: Optional[float] = typer.Option(None, "--epoch-scale", help="Multiply the VR recipes' epochs by this (fast and paper keep their ratio; CoOp keeps its own schedule)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the VR recipes' batch size."),
    val_shots: Optional[int] = options.ValShotsOption,
    allow_fewer: bool = options.AllowFewerOption,
    list_methods: bool = typer.Option(False, "--list-methods", help="List the methods and groups, then exit."),
    path_column: str = options.PathColumnOption,
    label_column: str = options.LabelColumnOption,
    group_column: Optional[str] = csv_options.GroupColumnOption,
    split_column: str = csv_options.SplitColumnOption,
    window: Optional[str] = options.WindowOption,
    max_pixels: int = options.MaxPixelsOption,
    device: options.Device = options.DeviceOption,
    allow_download: Optional[bool] = options.AllowDownloadOption,
    force: bool = typer.Option(False, "--force", help="Redo stored jobs whose settings changed (instead of refusing)."),
    json_out: bool = options.JsonOption,
) -> None:
    """Run (or resume) the sweep described by IMAGES or --suite and the options; print the table or JSON."""
    from biomedvr_cli.cli import console as render

    if list_methods:
        _list_methods()
        return
    from biomedvr_cli.atomic import check_folder_writable
    from biomedvr_cli.benchmark.request import BenchmarkOptions, build_request
    from biomedvr_cli.distributed import init_distributed

    request = build_request(BenchmarkOptions(
        out=out, images=images, test=test, attributes=attributes, suite=suite, name=name, backbone=backbone,
        methods=methods, shots=shots, seeds=seeds, epochs=epochs, epoch_scale=epoch_scale, batch_size=batch_size,
        val_shots=val_shots, allow_fewer=allow_fewer, path_column=path_column, label_column=label_column,
        group_column=group_column, split_column=split_column, window=window, max_pixels=max_pixels, device=device, allow_download=allow_download, force=force,
    ))
    check_folder_writable(request.out / "summary.json")  # an --out under a file fails before any job runs
    dist = init_distributed(device)
    try:
        outcome = _run(request, dist, render, ctx.meta)
    finally:
        dist.close()
    if outcome is None:  # not rank 0: rank 0 reports
        return
    _report(outcome, request, json_out, render)
    if outcome.failed:
        raise typer.Exit(outcome.failed[0]["exit_code"])


def _report(outcome: BenchmarkOutcome, request: BenchmarkRequest, json_out: bool, render: ModuleType) -> None:
    """Rank 0's output: one warning per failed job, then the JSON document or the table and a summary line."""
    for failure in outcome.failed:
        render.warn(f"{failure['dataset']} / {failure['method']} / {failure['shots']} shots / seed {failure['seed']}: {failure['error']}")
    if json_out:
        render.emit_json({**outcome.document, "run": {"jobs_run": outcome.ran, "jobs_stored": outcome.skipped},
                          "outputs": {k: str(v) for k, v in outcome.outputs.items()}})
        return
    seeds_text = f"{len(request.seeds)} seed(s)"
    _print_table(outcome, f"benchmark on {request.backbone}: test metrics, mean ± std over {seeds_text}; "
                          f"selection on validation")
    written = ", ".join(path.name for path in outcome.outputs.values())
    render.info(f"{outcome.ran} job(s) run, {outcome.skipped} already stored; reports in {request.out}/ ({written})")


def _run(request, dist, render, meta: dict):
    from biomedvr_cli.benchmark.runner import run_benchmark

    from biomedvr_cli.pipeline.notices import Caution

    def notify(message: str) -> None:  # rank 0 only; a caution (grouping, fallbacks) is a warning
        if dist.is_main:
            (render.warn if isinstance(message, Caution) else render.info)(message)

    kept = _KeptJobs(meta)
    if dist.active:
        def log(event) -> None:
            kept.count(event)
            acc = f" acc {event.accuracy:.3f}" if event.accuracy is not None else ""
            render.info(f"[rank {dist.rank}] {event.done}/{event.total} {event.status}: {event.job.key}{acc}"
                        + (f" ({event.error})" if event.error else ""))

        return run_benchmark(request, dist=dist, on_job=log, notify=notify)
    with render.progress_bar("count") as bar:
        task = None

        def update(event) -> None:
            nonlocal task
            kept.count(event)
            if task is None:
                task = bar.add_task("benchmark", total=event.total, status="")
            acc = f"acc {event.accuracy:.3f}" if event.accuracy is not None else (event.error or "")
            bar.update(task, completed=event.done, status=f"{event.job.key} {event.status} {acc}")

        return run_benchmark(request, dist=dist, on_job=update, notify=notify)


class _KeptJobs:
    """What an interrupt leaves, kept up to date for the exit line: how many jobs are in the store."""

    def __init__(self, meta: dict) -> None:
        self.meta, self.kept = meta, 0
        self._say()

    def count(self, event) -> None:
        if event.status in ("done", "skipped"):
            self.kept += 1
            self._say()

    def _say(self) -> None:
        if self.kept:
            self.meta["biomedvr.after_interrupt"] = (
                f"{self.kept} finished job(s) are kept under --out (jobs/) and partial outputs were removed "
                "(fix: run the same command again to resume)")
        else:
            self.meta["biomedvr.after_interrupt"] = (
                "no job had finished, so none is kept; partial outputs were removed (fix: run the command again)")


def register(app: typer.Typer) -> None:
    """Attach ``benchmark``."""
    app.command("benchmark", help=HELP)(benchmark)

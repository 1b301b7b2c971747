"""``biomedvr predict``: top-k classes for images, folders or CSV manifests."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Optional

from rich.text import Text

import typer

from biomedvr_cli.cli import options, trust_output

FORMATS = ("table", "json", "csv")


def _explain_header(rows: list[dict], sets: list[str] | None = None) -> list[str]:
    """The explanation columns of a CSV: the score split, then one column per sentence set (the adapter's,
    when known, so the columns never depend on which images could be read)."""
    if sets is None:
        sets = list(dict.fromkeys(name for row in rows if "explain" in row for name in row["explain"]["sentences"]))
    return ["sentence_score", "feature_head_score", "sentence_share", *(f"sentences_{name}" for name in sets)]


def _explain_cells(row: dict, header: list[str]) -> list[str]:
    if "explain" not in row:
        return [""] * len(header)
    score, sentences = row["explain"]["score"], row["explain"]["sentences"]
    cells = [f"{score['sentences']:.4f}", f"{score['feature_head']:.4f}", f"{score['sentence_share']:.4f}"]
    for name in header[3:]:  # "sentence (cosine) | ..." so one cell holds a whole set
        items = sentences.get(name.removeprefix("sentences_"), [])
        cells.append(" | ".join(f"{i['sentence']} ({i['cosine']:.4f})" for i in items))
    return cells


def _csv_text(rows: list[dict], top_k: int, explain: bool = False, columns: dict[str, list[str]] | None = None) -> str:
    from biomedvr_cli.data.files import printable_path, spreadsheet_safe

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = ["file", "prediction"]
    for i in range(1, top_k + 1):
        header += [f"class_{i}", f"probability_{i}"]
    columns = columns or {}
    extra = _explain_header(rows, columns.get("explain")) if explain else []
    trust = columns["trust"] if "trust" in columns else trust_output.trust_header(rows)
    writer.writerow([*header, *extra, *trust, "error"])
    for row in rows:
        # A file name holding bytes that are not UTF-8 is written with \xNN escapes, so the
        # CSV stays UTF-8 and no prediction is lost to an encoding error.
        cells = [printable_path(row["file"]), row.get("prediction", "")]
        top = row.get("top", [])
        for i in range(top_k):
            cells += [top[i]["class"], f"{top[i]['probability']:.6f}"] if i < len(top) else ["", ""]
        cells += _explain_cells(row, extra) if explain else []
        cells += trust_output.trust_cells(row, trust)
        writer.writerow([spreadsheet_safe(c) for c in (*cells, printable_path(row.get("error", "")))])
    return buffer.getvalue()


def _render_explanation(render, row: dict) -> None:
    score = row["explain"]["score"]
    render.info(f"{row['file']}: score of {row['prediction']} = sentences {score['sentences']:.2f} + feature head "
                f"{score['feature_head']:.2f} ({score['sentence_share']:.0%} from the sentences)")
    for set_name, items in row["explain"]["sentences"].items():
        render.info(f"  [{set_name}] " + " | ".join(f"{i['sentence']} ({i['cosine']:.3f})" for i in items))


def output_format_for(output_format: str | None, out: Path | None, *, json_out: bool = False) -> str:
    """The format to write: --json, else as given, else from the --out suffix (.csv, .json), else a table on stderr."""
    from biomedvr_cli.errors import UsageError

    if json_out:  # --json is --format json, as on every other command
        if output_format not in (None, "json"):
            raise UsageError(f"--json and --format {output_format} ask for two formats", "pass only one of them")
        return "json"
    if output_format is None:
        if out is None:
            return "table"
        by_suffix = {".csv": "csv", ".json": "json"}.get(out.suffix.lower())
        if by_suffix is None:
            raise UsageError(f"cannot tell the format of {out.name} from its name", "pass --format csv or --format json")
        return by_suffix
    if output_format not in FORMATS:
        raise UsageError(f"unknown format {output_format!r}", f"choose one of {', '.join(FORMATS)}")
    if output_format == "table" and out is not None:
        raise UsageError("a table is printed to the terminal, not written to --out", "pass --format csv or --format json")
    return output_format


def predict(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Image files, folders (searched recursively) or CSV manifests."),
    adapter: Path = options.AdapterOption,
    top_k: int = typer.Option(3, "--top-k", help="How many classes to list per image."),
    output_format: Optional[options.choice(FORMATS)] = typer.Option(
        None, "--format", help="table (stderr), json or csv (stdout or --out); default: table, or from the --out suffix."),
    json_out: bool = typer.Option(False, "--json", help="Same as --format json (one JSON document on stdout or --out)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the json/csv output to this file (never one of the inputs; - is stdout)."),
    explain: bool = typer.Option(False, "--explain", help="List the attribute sentences behind each top class (extra columns in CSV)."),
    coverage: Optional[float] = trust_output.CoverageOption,
    assurance: Optional[float] = trust_output.AssuranceOption,
    batch_size: int = typer.Option(64, "--batch-size", help="Images decoded and scored per batch."),
    backbone: Optional[str] = options.BackboneOverrideOption,
    path_column: str = options.PathColumnOption,
    window: Optional[str] = options.WindowOption,
    max_pixels: int = options.MaxPixelsOption,
    device: options.Device = options.DeviceOption,
    allow_download: Optional[bool] = options.AllowDownloadOption,
    accept_preprocessing: bool = options.AcceptPreprocessingOption,
    force: bool = options.ForceOption,
) -> None:
    """Predict classes with probabilities. Exit code 3 when any input could not be read (the rest are still predicted)."""
    from biomedvr_cli.atomic import check_writable, refuse_input_as_output, reserve_output
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.data import collect_inputs
    from biomedvr_cli.data.records import skipped_summary
    from biomedvr_cli.distributed import init_distributed
    from biomedvr_cli.errors import EXIT_INVALID_INPUT
    from biomedvr_cli.pipeline.predict import check_predict_options
    from biomedvr_cli.pipeline.trust import check_assurance, check_level

    if out is not None and str(out) == "-":  # the usual spelling of stdout
        if output_format is None and not json_out:
            from biomedvr_cli.errors import UsageError

            raise UsageError("--out - (stdout) needs a format", "pass --format csv or --format json (or --json)")
        out = None
    output_format = output_format_for(output_format, out, json_out=json_out)
    check_predict_options(top_k=top_k, batch_size=batch_size)
    coverage = None if coverage is None else check_level(coverage)
    assurance = check_assurance(assurance, coverage)
    if out is not None:  # before any work: an input given as --out, an existing file, a folder that cannot be written
        refuse_input_as_output(out, [*paths, adapter])
        check_writable(out, force=force)
    # Under torchrun (WORLD_SIZE > 1) batch i of the inputs goes to rank i % world; rank 0 writes them in input order.
    dist = init_distributed(device)
    # Rank 0 holds --out for the whole run, so a second run writing it fails now, not after its predictions.
    held = reserve_output(out, force=force, inputs=[*paths, adapter]) if out is not None and dist.is_main \
        else contextlib.nullcontext()
    partial: dict = {}  # what an interrupted single-process run had finished (rows, columns, k, total)
    files: list[Path] = []
    with held:
        try:
            passed_over: list = []
            files = collect_inputs(list(paths), columns=options.csv_columns(path_column, "label"), skipped=passed_over)
            if passed_over and dist.is_main:  # not hidden files: those a folder always has
                render.warn(f"{skipped_summary(passed_over)} inside the folders given (no row for them; name a file "
                            "to predict it anyway)")
            if out is not None:
                refuse_input_as_output(out, files)  # an image or a manifest's row named as --out
            gathered = _predict_shards(dist, files, adapter, top_k=top_k, batch_size=batch_size, explain=explain,
                                       coverage=coverage, assurance=assurance, backbone=backbone, window=window,
                                       max_pixels=max_pixels, device=device, allow_download=allow_download,
                                       accept_preprocessing=accept_preprocessing, partial=partial)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the finished rows beside --out, never in it
            if out is not None and partial.get("rows"):
                _keep_partial(ctx, partial, out, adapter.name, output_format, explain, force, [*paths, adapter, *files])
            raise
        finally:
            dist.close()
        if gathered is None:  # not rank 0
            return
        rows, n_classes, columns = gathered
        failed = sum(1 for r in rows if "error" in r)
        _emit(render, rows, adapter.name, max(1, min(top_k, n_classes)), output_format, out, explain, force, columns)
    if failed:
        render.warn(f"{failed} of {len(rows)} input(s) could not be read")
        raise typer.Exit(EXIT_INVALID_INPUT)


def _predict_shards(dist, files: list[Path], adapter: Path, *, top_k: int, batch_size: int, explain: bool,
                    coverage: Optional[float], assurance: Optional[float], backbone: Optional[str], window: Optional[str], max_pixels: int, device: str,
                    allow_download: Optional[bool], accept_preprocessing: bool, partial: dict
                    ) -> tuple[list[dict], int, dict[str, list[str]]] | None:
    """This rank's share of the predictions; rank 0 gets every row in input order, the class count and the
    output's trust and explanation columns (from the adapter and options, never from which images decoded).
    When interrupted in a single process, ``partial`` holds the rows finished so far (under torchrun each
    rank holds only its own share, so nothing is kept)."""
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.distributed import merge_shards
    from biomedvr_cli.pipeline.predict import predict_files
    from biomedvr_cli.pipeline.predictor import load_predictor
    from biomedvr_cli.pipeline.fit_inputs import window_unused
    from biomedvr_cli.pipeline.trust import require_calibration, sets_level

    mine = dist.shard(files, chunk=max(1, batch_size))
    predictor = load_predictor(adapter, backbone=backbone, device=device, allow_download=allow_download,
                               accept_preprocessing=accept_preprocessing, notify=render.warn)
    _, level_warnings, level_note = sets_level(predictor, coverage, assurance)
    unused_window = window_unused(files, options.decode_options(window, max_pixels)) if dist.is_main else []
    for notice in require_calibration(predictor, coverage=coverage) + level_warnings + unused_window if dist.is_main else []:
        render.warn(notice)  # a level too high for the calibration (full sets), a caveat, a window for no DICOM
    if level_note and dist.is_main:
        render.info(level_note)  # the assured level: information, not a warning
    columns = {"trust": (["prediction_set"] if coverage is not None else [])
                        + (["outlier", "outlier_score"] if predictor.calibration.outliers is not None else []),
               "explain": list(predictor.head.bank_names)}
    made: list = []
    with render.progress_bar("count", enabled=len(mine) > batch_size and dist.is_main) as bar:
        task = bar.add_task("predict", total=len(mine), status="")
        try:
            shard_results = predict_files(predictor, mine, top_k=top_k, batch_size=batch_size,
                                          decode=options.decode_options(window, max_pixels), explain=explain,
                                          coverage=coverage, assurance=assurance, made=made,
                                          progress=lambda done, total: bar.update(task, completed=done))
        except KeyboardInterrupt:
            if not dist.active:
                partial.update(rows=[r.to_dict() for r in made], total=len(mine), columns=columns,
                               k=max(1, min(top_k, len(predictor.classes))))
            raise
    parts = dist.gather(shard_results)
    if parts is None:
        return None
    return [r.to_dict() for r in merge_shards(parts, chunk=max(1, batch_size))], len(predictor.classes), columns


def partial_path(out: Path) -> Path:
    """Where an interrupted run keeps its finished predictions: ``preds.partial.csv`` beside ``preds.csv``."""
    return out.with_name(f"{out.stem}.partial{out.suffix}")


def _keep_partial(ctx: typer.Context, partial: dict, out: Path, adapter_name: str, output_format: str, explain: bool, force: bool, inputs: list) -> None:
    """Write the rows an interrupted run finished to :func:`partial_path` (atomically; never over an input,
    nor over an existing file without --force), and say so in the interrupt line (``ctx.meta``)."""
    from biomedvr_cli.atomic import lock_path, refuse_input_as_output, write_text_atomic
    from biomedvr_cli.errors import BiomedVRError

    rows, kept = partial["rows"], partial_path(out)
    text = (_csv_text(rows, partial["k"], explain, partial["columns"]) if output_format == "csv"
            else _json_text(rows, adapter_name, complete=False, total=partial["total"]))
    try:
        refuse_input_as_output(kept, inputs)
        if lock_path(kept).exists():  # another run is writing that name as its --out
            note = f"the {len(rows)} predictions made were not kept: another run is writing {kept.name}"
        elif (kept.exists() or kept.is_symlink()) and not force:
            note = f"the {len(rows)} predictions made were not kept: {kept.name} already exists (pass --force to replace it)"
        else:
            write_text_atomic(kept, text, force=True)
            note = f"the {len(rows)} predictions made (of {partial['total']} inputs) are kept in {kept.name}"
    except (BiomedVRError, OSError):
        note = f"the {len(rows)} predictions made could not be kept in {kept.name}"
    ctx.meta["biomedvr.after_interrupt"] = (
        f"{note}; nothing was written to {out.name} (fix: run the command again to predict every input)")


def _emit(render, rows: list[dict], adapter_name: str, k: int, output_format: str, out: Optional[Path],
          explain: bool, force: bool, columns: dict[str, list[str]] | None = None) -> None:
    """The rows as a table on stderr, or as CSV/JSON on stdout or into ``out``."""
    from biomedvr_cli.atomic import write_text_atomic

    if output_format == "table" and out is None:
        _render_table(render, rows, adapter_name, k, explain)
        return
    text = _csv_text(rows, k, explain, columns) if output_format == "csv" else _json_text(rows, adapter_name)
    if out is None:
        typer.echo(text, nl=False)
        return
    write_text_atomic(out, text, force=force)
    render.info(f"wrote {len(rows)} predictions to {out}")
    if partial_path(out).is_file():  # left by an earlier interrupted run; this complete output supersedes it
        render.info(f"{partial_path(out).name} beside it is from an earlier interrupted run and is not needed now "
                    "(it is left as it was: delete it when done)")


def _json_text(rows: list[dict], adapter_name: str, *, complete: bool = True, total: int | None = None) -> str:
    """The rows as JSON; file names (and errors naming them) with non-UTF-8 bytes as ``\\xNN``, as in the CSV.
    An interrupted run's document says ``"complete": false`` and how many inputs there were."""
    from biomedvr_cli.data.files import printable_path

    def printable(row: dict) -> dict:
        fixed = {**row, "file": printable_path(row["file"])}
        if "error" in row:
            fixed["error"] = printable_path(row["error"])
        return fixed

    document: dict = {"adapter": adapter_name}
    if not complete:
        document.update(complete=False, inputs=total)
    document["predictions"] = [printable(r) for r in rows]
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _render_table(render, rows: list[dict], adapter_name: str, k: int, explain: bool) -> None:
    """The predictions as a table on stderr (and the explanations after it)."""
    table_rows = []
    trust = trust_output.trust_header(rows)
    for r in rows:
        if "error" in r:
            table_rows.append([r["file"], Text("error", style="red"), r["error"], *[""] * len(trust)])
        else:
            table_rows.append([r["file"], r["prediction"], ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"]),
                               *trust_output.trust_cells(r, trust, table=True)])
    render.rows_table(f"predictions ({adapter_name})", ["file", "prediction", f"top {k}", *trust], table_rows)
    if explain:
        for r in rows:
            if "explain" in r:
                _render_explanation(render, r)


def register(app: typer.Typer) -> None:
    """Attach ``predict``."""
    app.command("predict")(predict)

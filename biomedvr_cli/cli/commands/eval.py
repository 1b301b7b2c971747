"""``biomedvr eval``: metrics of an adapter on labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from biomedvr_cli.cli import csv_options
from biomedvr_cli.cli import options, trust_output


def evaluate(
    images: Path = typer.Argument(..., help="Labelled images: class-per-folder tree (or train/test tree) or CSV manifest."),
    adapter: Path = options.AdapterOption,
    plots: Optional[Path] = typer.Option(
        None, "--plots", help="Folder for confusion_matrix.png and reliability.png (not the images' folder; "
                              "existing PNGs need --force)."),
    split: options.choice(options.EVAL_SPLITS) = typer.Option("auto", "--split", help="auto (the test split when the source has one, else everything), test, val, train or all."),
    backbone: Optional[str] = options.BackboneOverrideOption,
    path_column: str = options.PathColumnOption,
    label_column: str = options.LabelColumnOption,
    split_column: str = csv_options.SplitColumnOption,
    window: Optional[str] = options.WindowOption,
    max_pixels: int = options.MaxPixelsOption,
    device: options.Device = options.DeviceOption,
    allow_download: Optional[bool] = options.AllowDownloadOption,
    accept_preprocessing: bool = options.AcceptPreprocessingOption,
    json_out: bool = options.JsonOption,
    force: bool = typer.Option(False, "--force", help="Overwrite the PNGs already in the --plots folder."),
    coverage: Optional[float] = trust_output.EvalCoverageOption,
    assurance: Optional[float] = trust_output.AssuranceOption,
    outliers: Optional[Path] = trust_output.OutliersOption,
) -> None:
    """Accuracy, balanced accuracy, macro-F1, AUROC, ECE, NLL, per-class table and confusion matrix."""
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.method.metrics import SCALAR_METRICS
    from biomedvr_cli.pipeline.evaluate import evaluate_adapter
    from biomedvr_cli.pipeline.predictor import load_predictor

    predictor = None
    if accept_preprocessing:  # evaluate_adapter loads the adapter itself otherwise
        predictor = load_predictor(adapter, backbone=backbone, device=device, allow_download=allow_download,
                                   accept_preprocessing=True, notify=render.warn)
    result = evaluate_adapter(
        images, adapter, split=split, backbone=backbone, device=device, allow_download=allow_download,
        columns=csv_options.csv_columns(path_column, label_column, csv_options.NO_GROUP, split_column),
        decode=options.decode_options(window, max_pixels),
        plots=plots, predictor=predictor, force=force, coverage=coverage, outliers=outliers, assurance=assurance,
    )
    metrics = result["metrics"]
    for warning in result["warnings"]:
        render.warn(warning)
    for note in result["notes"]:
        render.info(note)
    if json_out:
        render.emit_json(result)
        return
    render.key_value_table(
        f"{adapter.name} on {metrics['images']} images ({result['split']})",
        [(name, metrics[name]) for name in SCALAR_METRICS] + trust_output.metric_rows(metrics),
    )
    sets = trust_output.per_class_columns(metrics)  # coverage and set size with --coverage
    render.rows_table("per class", ["class", "precision", "recall", "f1", "support", *sets],
                      [[r["class"], r["precision"], r["recall"], r["f1"], r["support"], *(r[c] for c in sets)]
                       for r in metrics["per_class"]])
    classes = metrics["classes"]
    render.rows_table("confusion matrix (rows: true, columns: predicted)", ["true \\ pred", *classes],
                      [[c, *row] for c, row in zip(classes, metrics["confusion_matrix"])])
    for path in result.get("plots", []):
        render.info(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Attach ``eval``."""
    app.command("eval")(evaluate)

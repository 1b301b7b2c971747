"""``biomedvr info``: what an adapter was trained on (reads metadata only)."""

from __future__ import annotations

from pathlib import Path

import typer

from biomedvr_cli.cli import options


def info(
    adapter: Path = typer.Argument(..., help="Adapter file."),
    json_out: bool = options.JsonOption,
) -> None:
    """Show an adapter's backbone, classes, attributes, method, training and validation metrics."""
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.adapter import parse_config, read_metadata

    metadata = read_metadata(adapter)
    config = parse_config(metadata, adapter.name)
    if json_out:
        render.emit_json({"format": metadata.get("format"), "format_version": metadata.get("format_version"),
                          "config": config.to_dict()})
        return
    attributes, training = config.attributes, config.training
    render.key_value_table(
        f"{adapter.name} (format {metadata.get('format_version')}, biomedvr {config.biomedvr_version})",
        [
            ("backbone", f"{config.backbone.label} ({config.backbone.fingerprint})"),
            ("input", f"{config.preprocessing.image_size}px"),
            ("classes", ", ".join(config.classes)),
            ("attributes", attributes.source + (f" (task: {attributes.task})" if attributes.task else "")
             + ", " + ", ".join(f"{k}: {len(v)}" for k, v in attributes.sentences.items())),
            ("method", ", ".join(f"{k}={v}" for k, v in config.method.items())),
            ("shots / seed", f"{training.shots} / {training.seed}"),
            ("recipe", f"{training.recipe.get('name')} ({training.recipe.get('epochs')} epochs)"),
            ("selection", f"{config.selection.rule}; epoch {config.selection.epoch}"),
            ("validation accuracy", config.validation.accuracy),
        ],
    )


def register(app: typer.Typer) -> None:
    """Attach ``info``."""
    app.command("info")(info)

"""``biomedvr info``: what an adapter was trained on (reads its metadata and checks its content digest)."""

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
    from biomedvr_cli.adapter.file import CONTENT_KEY, read_adapter_header

    from biomedvr_cli.method.config import adapter_method

    metadata, config = read_adapter_header(adapter)
    adapter_method(config.method, adapter.name)  # a method value predict would refuse is refused here too
    if json_out:
        render.emit_json({"format": metadata.get("format"), "format_version": metadata.get("format_version"),
                          CONTENT_KEY: metadata.get(CONTENT_KEY), "config": config.to_dict()})
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
            ("shots / seed", f"{training.shots} / {training.seed} ({training.train_images} support and "
                             f"{training.val_images} validation images)"),
            ("recipe", f"{training.recipe.get('name')} ({training.recipe.get('epochs')} epochs)"),
            ("selection", f"{config.selection.rule}; epoch {config.selection.epoch}"),
            _held_out_row(config.validation),
            *_calibration_rows(config.calibration),
            ("content digest", f"sha256 {metadata[CONTENT_KEY][:16]}..., matches the file" if CONTENT_KEY in metadata
             else "none (written before adapters carried one, 2026-12-08): an edit that keeps every value plausible would load"),
        ],
    )


# What each kind of held-out figure is (adapter/config.py ValidationRecord.kind), as info names it.
_HELD_OUT = {"validation": "validation accuracy", "cross-validation": "cross-validated accuracy",
             "validation-before-refit": "validation accuracy (before the refit on every label)"}


def _held_out_row(validation) -> tuple[str, str]:
    """The held-out accuracy under the name of what it is, or why there is none."""
    if validation.accuracy is None:
        return ("held-out accuracy", "none: every labelled image was fitted (no validation split)")
    name = _HELD_OUT.get(validation.kind, "held-out accuracy")
    return (name, f"{validation.accuracy:.4f} on {validation.images} images")


def _calibration_rows(calibration: dict) -> list[tuple[str, str]]:
    """What the adapter's prediction sets and outlier flag were calibrated on (docs/trust.md)."""
    import math

    from biomedvr_cli.method.conformal import assured_level, level_text

    sets, flag = calibration.get("conformal"), calibration.get("outliers")
    if not sets and not flag:
        return [("trust", calibration.get("note") or "no prediction sets or outlier flag: fitted before they "
                 "existed; refit the adapter")]
    rows = []
    if isinstance(sets, dict):
        images = int(sets.get("images", 0))
        models = "one model" if sets.get("method") == "split" else f"{sets.get('folds')} fold models"
        text = (f"{sets.get('method')} over {models}, {images} labelled images; --coverage up to "
                f"{math.floor(float(sets.get('max_level', 0)) * 1000) / 1000:.3f}")
        assured = assured_level(images, 0.9, 0.9) if images else None
        text += ("; for this adapter's own coverage to be at least 0.9 with probability 0.9, pass --coverage 0.9 "
                 f"--assurance 0.9 (the same as --coverage {level_text(assured, images)})" if assured is not None
                 else "; too few labelled images to be 90% sure of 0.9 coverage")
        rows.append(("prediction sets", text + (f" (caveat: {sets['caveat']})" if sets.get("caveat") else "")))
    if isinstance(flag, dict):
        rows.append(("outlier flag", f"{flag.get('score')}; threshold {flag.get('threshold')} "
                     f"(about {100 * float(flag.get('rate', 0)):g}% of images like the labelled ones score above it)"))
    elif calibration.get("note"):
        rows.append(("outlier flag", str(calibration["note"])))
    return rows


def register(app: typer.Typer) -> None:
    """Attach ``info``."""
    app.command("info")(info)

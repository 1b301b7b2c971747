"""``biomedvr fit``: learn an adapter from a few labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from biomedvr_cli.cli import options
from biomedvr_cli.method.config import MethodConfig

# CLI defaults come from the method's own defaults (one source of truth; no torch import).
_DEFAULTS = MethodConfig()


def fit(
    images: Path = typer.Argument(..., help="Class-per-folder tree or CSV manifest (path, label, optional split/group)."),
    shots: int = typer.Option(..., "--shots", "-k", help="Training images per class (K)."),
    attributes: Optional[Path] = typer.Option(
        None, "--attributes", help="Attributes JSON (default: attributes.json beside the images, else class-name templates)."
    ),
    backbone: str = typer.Option("biomedclip", "--backbone", help="Preset, hf-hub:ORG/REPO, local-dir:PATH, MODEL:TAG or MODEL:WEIGHTS."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Adapter file to write (default: <images>-<backbone>-<K>shot.safetensors)."),
    seed: int = typer.Option(0, "--seed", min=0, max=options.MAX_SEED, help="Seed for the few-shot draw, initialisation and augmentation."),
    recipe: str = typer.Option("fast", "--recipe", help="Training recipe: fast (default) or paper (the reference's 400 epochs)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the recipe's epochs."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Override the recipe's learning rate."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the recipe's batch size."),
    vr: str = typer.Option(_DEFAULTS.vr, "--vr", help="Visual reprogramming: padding (the reference), full or mask."),
    vr_frame: Optional[int] = typer.Option(None, "--vr-frame", help="Padding VR frame width in px (default: image shrunk to 6/7 of the input)."),
    vr_eps: float = typer.Option(_DEFAULTS.vr_eps, "--vr-eps", help="Bound of the additive pattern for --vr full and mask (pixel units in [0,1])."),
    gate: str = typer.Option(_DEFAULTS.gate, "--gate", help="Expert gate: global (reference), class or sample."),
    combine: str = typer.Option(
        _DEFAULTS.combine, "--combine",
        help="Fuse the experts: signed (a learned weight on the negative expert, from 0), add (reference) or subtract."),
    beta: float = typer.Option(_DEFAULTS.beta, "--beta", help="Weight of the Confusion-Suppression loss."),
    margin: float = typer.Option(_DEFAULTS.margin, "--margin", help="Margin of the Confusion-Suppression loss (logit units)."),
    no_confusion_loss: bool = typer.Option(False, "--no-confusion-loss", help="Train with cross-entropy only."),
    no_negative: bool = typer.Option(False, "--no-negative", help="Drop the negative expert (AttrVR)."),
    no_feature_head: bool = typer.Option(False, "--no-feature-head", help="Sentence scores only (no linear head on the image feature)."),
    head_test: str = typer.Option(
        _DEFAULTS.head_test, "--head-test",
        help="How the feature head must beat the sentence scores in cross-validation: either (clearly more right, or with 8+ images a class a clearly lower log-loss and no fewer right) or accuracy (clearly more right only)."),
    paper: bool = typer.Option(False, "--paper", help="BioMedVR exactly as published: padding VR, softmax gate adding the experts, no feature head, recipe paper."),
    k: int = typer.Option(_DEFAULTS.k, "--k", help="Top-k sentences averaged per class."),
    m: int = typer.Option(_DEFAULTS.m or 20, "--m", help="At most m sentences per class and set (never resampled)."),
    val_shots: Optional[int] = options.ValShotsOption,
    allow_fewer: bool = options.AllowFewerOption,
    path_column: str = options.PathColumnOption,
    label_column: str = options.LabelColumnOption,
    window: Optional[str] = options.WindowOption,
    max_pixels: int = options.MaxPixelsOption,
    device: str = options.DeviceOption,
    allow_download: Optional[bool] = options.AllowDownloadOption,
    force: bool = options.ForceOption,
    json_out: bool = options.JsonOption,
) -> None:
    """Fit an adapter (VR patterns, expert weights, feature head, text banks) on K images per class; writes one .safetensors file."""
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.pipeline.fit import FitRequest, fit_adapter

    try:
        if paper:
            vr, combine, no_feature_head, recipe = "padding", "add", True, "paper"
        method = MethodConfig(vr=vr, vr_frame=vr_frame, vr_eps=vr_eps, gate=gate, combine=combine, negative=not no_negative,
                              confusion_loss=not no_confusion_loss, beta=beta, margin=margin, k=k, m=m,
                              feature_head=not no_feature_head, head_test=head_test)
    except ValueError as exc:
        raise UsageError(str(exc), "see `biomedvr fit --help` for the allowed values") from None
    out_path = out or options.default_adapter_name(images, backbone, shots)
    request = FitRequest(
        images=images, shots=shots, out=out_path, attributes=attributes, backbone=backbone, seed=seed, recipe=recipe,
        recipe_overrides={"epochs": epochs, "lr": lr, "batch_size": batch_size}, method=method, val_shots=val_shots,
        device=device, force=force, allow_fewer=allow_fewer, allow_download=allow_download,
        columns=options.csv_columns(path_column, label_column), decode=options.decode_options(window, max_pixels),
    )
    _refuse_identifier_class_names(request)
    if out is None:
        render.info(f"adapter will be written to {out_path}")
    with render.EpochProgress("fit") as bar:
        result = fit_adapter(request, progress=bar.update, notify=render.info)
    for warning in result.warnings:
        render.warn(warning)
    if json_out:
        render.emit_json(result.to_dict())
        return
    render.key_value_table(
        f"wrote {out_path}",
        [("classes", len(result.classes)), ("train / val images", f"{result.train_images} / {result.val_images}"),
         ("attributes", result.attribute_source), ("backbone", result.backbone), ("recipe", result.recipe),
         ("selected epoch", result.selected_epoch), ("validation accuracy", result.val_accuracy),
         ("selection", result.selection_rule), ("feature head", result.feature_head or "off"),
         ("seconds", round(result.seconds, 1))],
    )


def _refuse_identifier_class_names(request) -> None:
    """Class names end up in the adapter: refuse identifier-like ones (exit 3) before any training.

    The adapter writer checks again; this check only moves the refusal ahead of the work.
    """
    from biomedvr_cli.attributes.privacy import check_stored_class_names
    from biomedvr_cli.data import open_source

    source = open_source(request.images, columns=request.columns)
    check_stored_class_names(source.classes, "class folder" if request.images.is_dir() else "label")


def register(app: typer.Typer) -> None:
    """Attach ``fit``."""
    app.command("fit")(fit)

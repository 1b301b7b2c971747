"""``fit`` as a library call: images + attributes + backbone -> one adapter file.

Steps: reserve the output, read the image source, resolve the attributes, load the frozen
backbone, draw and decode the few-shot split (from files that decode), encode the text banks
once, train the head (VR stage with validation-based selection, then the feature head),
and write the adapter atomically.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from biomedvr_cli import __version__
from biomedvr_cli.adapter import save_adapter
from biomedvr_cli.adapter.config import (
    AdapterConfig,
    AttributeRecord,
    BackboneRecord,
    Preprocessing,
    SelectionRecord,
    TrainingRecord,
    ValidationRecord,
)
from biomedvr_cli.atomic import reserve_output
from biomedvr_cli.backbones import load_backbone
from biomedvr_cli.data import CsvColumns, DecodeOptions, open_source
from biomedvr_cli.errors import InvalidInputError, UsageError
from biomedvr_cli.method.build import build_head, trained_config
from biomedvr_cli.method.config import MethodConfig
from biomedvr_cli.method.head import BioMedVRHead
from biomedvr_cli.method.recipes import DEFAULT_RECIPE, Recipe, load_recipe
from biomedvr_cli.method.training import EpochReport, TrainResult, train_head
from biomedvr_cli.pipeline.fit_inputs import (
    DecodedSplit,
    ResolvedAttributes,
    draw_readable,
    find_attributes,
    image_hashes,
    resolve_attributes,
)

__all__ = ["FitRequest", "FitResult", "ResolvedAttributes", "find_attributes", "fit_adapter", "resolve_attributes"]


@dataclass
class FitRequest:
    """Everything ``fit`` needs; CLI options map onto these fields one to one."""

    images: Path
    shots: int
    out: Path
    attributes: Path | None = None
    backbone: str = "biomedclip"
    seed: int = 0
    recipe: str = DEFAULT_RECIPE
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    method: MethodConfig = field(default_factory=MethodConfig)
    val_shots: int | None = None
    device: str = "auto"
    force: bool = False
    allow_fewer: bool = False
    allow_download: bool | None = None
    columns: CsvColumns = field(default_factory=CsvColumns)
    decode: DecodeOptions = field(default_factory=DecodeOptions)


@dataclass
class FitResult:
    """Summary of a finished fit (also what ``--json`` prints); ``head`` is the trained head, in memory."""

    out: Path
    classes: list[str]
    train_images: int
    val_images: int
    attribute_source: str
    selected_epoch: int
    selection_rule: str
    val_accuracy: float | None
    val_nll: float | None
    seconds: float
    backbone: str
    recipe: str
    warnings: list[str]
    feature_head: str | None = None
    head: BioMedVRHead | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the output name only, never a full path)."""
        return {
            "adapter": self.out.name, "classes": self.classes, "train_images": self.train_images,
            "val_images": self.val_images, "attributes": self.attribute_source, "backbone": self.backbone,
            "recipe": self.recipe, "selected_epoch": self.selected_epoch, "selection_rule": self.selection_rule,
            "feature_head": self.feature_head, "val_accuracy": self.val_accuracy, "val_nll": self.val_nll,
            "seconds": round(self.seconds, 2), "warnings": self.warnings,
        }


def backbone_record(backbone) -> BackboneRecord:
    """The path-free description of a loaded backbone stored in adapters."""
    spec = backbone.spec
    return BackboneRecord(
        label=backbone.label, fingerprint=backbone.fingerprint, logit_scale=backbone.logit_scale,
        embed_dim=backbone.embed_dim, model=spec.model if spec.kind != "local-dir" else "local-dir",
        pretrained=spec.pretrained if spec.kind in ("preset", "tag") else None,
    )


def adapter_config(request: FitRequest, backbone, classes: list[str], attributes: ResolvedAttributes,
                   sentences: dict[str, list[str]], head: BioMedVRHead, split: DecodedSplit, recipe: Recipe,
                   result: TrainResult) -> AdapterConfig:
    """The adapter's config for a finished fit."""
    rule = result.selection_rule + (f"; {result.feature_head.describe()}" if result.feature_head else "")
    n_val = int(split.val_images.shape[0])
    return AdapterConfig(
        biomedvr_version=__version__,
        created_with={"torch": torch.__version__, "python": platform.python_version()},
        backbone=backbone_record(backbone),
        preprocessing=Preprocessing(image_size=backbone.image_size, mean=list(backbone.mean), std=list(backbone.std)),
        classes=classes,
        attributes=AttributeRecord(source=attributes.source, sentences=sentences, task=attributes.task,
                                   hash=attributes.content_hash),
        method=trained_config(request.method, head).to_dict(),
        training=TrainingRecord(seed=request.seed, shots=request.shots, val_shots=n_val // max(1, len(classes)),
                                train_images=len(split.train), val_images=n_val, recipe=recipe.to_dict(),
                                device=backbone.device.type, seconds=round(result.seconds, 2),
                                image_hashes=image_hashes(split.train + split.val)),
        selection=SelectionRecord(rule=rule, epoch=result.selected_epoch),
        validation=ValidationRecord(accuracy=result.val_accuracy, nll=result.val_nll, images=n_val),
    )


def _check_request(request: FitRequest) -> Recipe:
    if request.shots < 1:
        raise UsageError("--shots must be at least 1", "pass --shots 8 (images per class to learn from)")
    if request.val_shots is not None and request.val_shots < 0:
        raise UsageError("--val-shots must be 0 or more", "pass --val-shots 4, or 0 to keep the last epoch")
    return load_recipe(request.recipe).with_overrides(**request.recipe_overrides)


def fit_adapter(
    request: FitRequest,
    *,
    progress: Callable[[EpochReport], None] | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> FitResult:
    """Run a whole fit and write the adapter; raises BiomedVRError subclasses on bad input."""
    recipe = _check_request(request)
    with reserve_output(request.out, force=request.force):
        source = open_source(request.images, columns=request.columns)
        classes = list(source.classes)
        if len(classes) < 2:
            raise InvalidInputError(f"found {len(classes)} class(es) in the images",
                                    "give at least two classes (one folder per class)")
        warnings = [f"{len(source.skipped)} file(s) were skipped (hidden, not images, or listed but missing)"] \
            if source.skipped else []
        attributes = resolve_attributes(request.images, request.attributes, classes, notify)
        backbone = load_backbone(request.backbone, device=request.device, allow_download=request.allow_download)
        split = draw_readable(source.records, classes, request.shots, seed=request.seed, val_shots=request.val_shots,
                              allow_fewer=request.allow_fewer, size=backbone.image_size, options=request.decode)
        warnings.extend(split.warnings)
        try:
            head, sentences = build_head(backbone, classes, attributes.sets, request.method, seed=request.seed)
        except ValueError as exc:  # a setting that does not fit this backbone, e.g. a VR frame wider than its input
            raise UsageError(str(exc), "see `biomedvr fit --help`; the frame must fit the backbone's input size") from None
        result = train_head(head, backbone.encode_images, split.train_images, split.labels("train", classes),
                            split.val_images, split.labels("val", classes), recipe, seed=request.seed,
                            device=backbone.device, shots=request.shots, progress=progress)
        config = adapter_config(request, backbone, classes, attributes, sentences, head, split, recipe, result)
        save_adapter(request.out, head.to("cpu").state_dict(), config, force=request.force)
    return FitResult(
        out=request.out, classes=classes, train_images=len(split.train), val_images=len(split.val),
        attribute_source=attributes.source, selected_epoch=result.selected_epoch, selection_rule=result.selection_rule,
        val_accuracy=result.val_accuracy, val_nll=result.val_nll, seconds=result.seconds, backbone=backbone.label,
        recipe=recipe.name, warnings=warnings,
        feature_head=result.feature_head.describe() if result.feature_head else None, head=head,
    )

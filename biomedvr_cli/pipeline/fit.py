"""``fit`` as a library call: images + attributes + backbone -> one adapter file.

Steps: read the image source, resolve the attributes, draw the few-shot split, load the
frozen backbone, decode the chosen images once, encode the text banks once, train the
head with validation-based selection, and write the adapter atomically.
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
from biomedvr_cli.atomic import check_writable
from biomedvr_cli.backbones import load_backbone
from biomedvr_cli.data import CsvColumns, DecodeOptions, ImageRecord, decode_to_tensors, open_source, sample_few_shot
from biomedvr_cli.errors import InvalidInputError, UsageError
from biomedvr_cli.method.head import BioMedVRHead, MethodConfig
from biomedvr_cli.method.textbanks import BANK_SETS, class_name_sentences, collect_sentences, encode_bank
from biomedvr_cli.method.recipes import DEFAULT_RECIPE, Recipe, load_recipe
from biomedvr_cli.method.training import EpochReport, train_head

ATTRIBUTES_BESIDE = "attributes.json"


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
    """Summary of a finished fit (also what ``--json`` prints)."""

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the output name only, never a full path)."""
        return {
            "adapter": self.out.name,
            "classes": self.classes,
            "train_images": self.train_images,
            "val_images": self.val_images,
            "attributes": self.attribute_source,
            "backbone": self.backbone,
            "recipe": self.recipe,
            "selected_epoch": self.selected_epoch,
            "selection_rule": self.selection_rule,
            "val_accuracy": self.val_accuracy,
            "val_nll": self.val_nll,
            "seconds": round(self.seconds, 2),
            "warnings": self.warnings,
        }


@dataclass
class ResolvedAttributes:
    """Per-class sentence sets plus where they came from."""

    sets: dict[str, dict[str, list[str]]]
    source: str  # "file" | "class-name templates"
    task: str
    content_hash: str | None


def resolve_attributes(images: Path, explicit: Path | None, classes: list[str], notify: Callable[[str], None]) -> ResolvedAttributes:
    """Attributes from ``--attributes``, else ``attributes.json`` beside the images, else class-name templates."""
    from biomedvr_cli.attributes import load_attributes

    path = explicit
    if path is None:
        beside = (images if images.is_dir() else images.parent) / ATTRIBUTES_BESIDE
        if beside.is_file():
            notify(f"using {ATTRIBUTES_BESIDE} found beside the images")
            path = beside
    if path is None:
        notify("no attributes file: scoring against class-name templates (the AR baseline); pass --attributes for BioMedVR")
        return ResolvedAttributes(class_name_sentences(classes), "class-name templates", "", None)
    attrs = load_attributes(path)
    missing = [c for c in classes if c not in attrs.classes]
    extra = [c for c in attrs.classes if c not in classes]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"image classes missing from the attributes file: {', '.join(missing)}")
        if extra:
            parts.append(f"attribute classes with no images: {', '.join(extra)}")
        raise InvalidInputError(
            "classes do not match the attributes file (" + "; ".join(parts) + ")",
            "make the class folder/label names and the attribute file's class names identical",
        )
    return ResolvedAttributes(attrs.sentence_sets(classes), "file", attrs.task, attrs.content_hash())


def build_head(backbone, classes: list[str], attributes: ResolvedAttributes, method: MethodConfig) -> tuple[BioMedVRHead, dict[str, list[str]]]:
    """Encode the text banks once and build the head; returns the head and the sentences used."""
    banks = {}
    used: dict[str, list[str]] = {}
    for set_name in BANK_SETS:
        sentences, owners = collect_sentences(classes, attributes.sets, set_name, method.m)
        if not sentences:
            continue
        if set_name == "confusion" and not method.negative:
            continue
        banks[set_name] = encode_bank(backbone.encode_texts, sentences, owners)
        used[set_name] = sentences
    head = BioMedVRHead(method, len(classes), backbone.image_size, backbone.embed_dim, backbone.logit_scale, banks)
    return head, used


def backbone_record(backbone) -> BackboneRecord:
    """The path-free description of a loaded backbone stored in adapters."""
    spec = backbone.spec
    return BackboneRecord(
        label=backbone.label, fingerprint=backbone.fingerprint, logit_scale=backbone.logit_scale,
        embed_dim=backbone.embed_dim, model=spec.model if spec.kind != "local-dir" else "local-dir",
        pretrained=spec.pretrained if spec.kind in ("preset", "tag") else None,
    )


def _labels(records: list[ImageRecord], classes: list[str]) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[r.label] for r in records], dtype=torch.long)


def _decode(records: list[ImageRecord], classes: list[str], size: int, options: DecodeOptions, warnings: list[str], what: str):
    batch = decode_to_tensors([r.path for r in records], size, options)
    if batch.failures:
        warnings.append(f"{len(batch.failures)} {what} image(s) could not be read and were skipped")
    kept = [records[i] for i in batch.kept]
    return batch.images, _labels(kept, classes), kept


def fit_adapter(
    request: FitRequest,
    *,
    progress: Callable[[EpochReport], None] | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> FitResult:
    """Run a whole fit and write the adapter; raises BiomedVRError subclasses on bad input."""
    if request.shots < 1:
        raise UsageError("--shots must be at least 1", "pass --shots 8 (images per class to learn from)")
    check_writable(request.out, force=request.force)
    recipe: Recipe = load_recipe(request.recipe).with_overrides(**request.recipe_overrides)
    source = open_source(request.images, columns=request.columns)
    classes = list(source.classes)
    if len(classes) < 2:
        raise InvalidInputError(f"found {len(classes)} class(es) in the images", "give at least two classes (one folder per class)")
    warnings: list[str] = []
    if source.skipped:
        warnings.append(f"{len(source.skipped)} file(s) were skipped (hidden, not images, or listed but missing)")
    attributes = resolve_attributes(request.images, request.attributes, classes, notify)
    split = sample_few_shot(source.records, classes, request.shots, seed=request.seed, val_shots=request.val_shots,
                            allow_fewer=request.allow_fewer)
    warnings.extend(split.warnings)

    backbone = load_backbone(request.backbone, device=request.device, allow_download=request.allow_download)
    train_x, train_y, train_kept = _decode(split.train, classes, backbone.image_size, request.decode, warnings, "training")
    val_x, val_y, _ = _decode(split.val, classes, backbone.image_size, request.decode, warnings, "validation")
    lacking = [c for i, c in enumerate(classes) if not bool((train_y == i).any())]
    if lacking:
        raise InvalidInputError(f"no readable training image for class(es) {', '.join(lacking)}", "add readable images for them")

    head, used_sentences = build_head(backbone, classes, attributes, request.method)
    result = train_head(
        head, backbone.encode_images, train_x, train_y, val_x, val_y, recipe,
        seed=request.seed, device=backbone.device, shots=request.shots, progress=progress,
    )
    config = AdapterConfig(
        biomedvr_version=__version__,
        created_with={"torch": torch.__version__, "python": platform.python_version()},
        backbone=backbone_record(backbone),
        preprocessing=Preprocessing(image_size=backbone.image_size, mean=list(backbone.mean), std=list(backbone.std)),
        classes=classes,
        attributes=AttributeRecord(source=attributes.source, sentences=used_sentences, task=attributes.task,
                                   hash=attributes.content_hash),
        method=request.method.to_dict(),
        training=TrainingRecord(seed=request.seed, shots=request.shots, val_shots=len(split.val) // max(1, len(classes)),
                                train_images=len(train_kept), val_images=int(val_x.shape[0]), recipe=recipe.to_dict(),
                                device=backbone.device.type, seconds=round(result.seconds, 2)),
        selection=SelectionRecord(rule=result.selection_rule, epoch=result.selected_epoch),
        validation=ValidationRecord(accuracy=result.val_accuracy, nll=result.val_nll, images=int(val_x.shape[0])),
    )
    head_cpu = head.to("cpu")
    save_adapter(request.out, head_cpu.state_dict(), config, force=request.force)
    return FitResult(
        out=request.out, classes=classes, train_images=len(train_kept), val_images=int(val_x.shape[0]),
        attribute_source=attributes.source, selected_epoch=result.selected_epoch, selection_rule=result.selection_rule,
        val_accuracy=result.val_accuracy, val_nll=result.val_nll, seconds=result.seconds, backbone=backbone.label,
        recipe=recipe.name, warnings=warnings,
    )

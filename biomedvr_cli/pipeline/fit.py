"""``fit`` as a library call: images + attributes + backbone -> one adapter file.

Steps: reserve the output, read the image source, resolve the attributes, load the frozen
backbone, draw and decode the few-shot split (from files that decode), encode the text banks
once, train the head (VR stage with validation-based selection, then the feature head),
and write the adapter atomically.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from biomedvr_cli import __version__
from biomedvr_cli.adapter import Adapter, save_adapter
from biomedvr_cli.adapter.config import (
    AdapterConfig,
    AttributeRecord,
    BackboneRecord,
    Preprocessing,
    SelectionRecord,
    TrainingRecord,
    ValidationRecord,
)
from biomedvr_cli.atomic import refuse_input_as_output, reserve_output
from biomedvr_cli.attributes.privacy import check_stored_class_names
from biomedvr_cli.data import CsvColumns, DecodeOptions
from biomedvr_cli.data.hashing import new_hash_salt, pixel_hashes
from biomedvr_cli.data.sampling import default_val_shots
from biomedvr_cli.errors import InvalidInputError, UsageError
from biomedvr_cli.method.build import build_head, trained_config
from biomedvr_cli.method.config import MethodConfig
from biomedvr_cli.method.head import BioMedVRHead
from biomedvr_cli.method.recipes import DEFAULT_RECIPE, Recipe, load_recipe
from biomedvr_cli.method.textbanks import class_name_sentences
from biomedvr_cli.method.training import EpochReport, LabelledImages, TrainResult, train_head
from biomedvr_cli.method.trust import calibrate
from biomedvr_cli.pipeline.arguments import (
    as_count,
    as_flag,
    as_optional_path,
    as_seed,
    as_text,
    check_backbone_argument,
    obtain_backbone,
)
from biomedvr_cli.pipeline.fit_inputs import (
    DecodedSplit,
    ResolvedAttributes,
    draw_readable,
    find_attributes,
    resolve_attributes,
)
from biomedvr_cli.pipeline.images import ImageInput, MemoryImages, images_argument, open_images
from biomedvr_cli.pipeline.notices import warn_at_caller
from biomedvr_cli.pipeline.state import float32_default, preserved_rng

__all__ = ["FitRequest", "FitResult", "ResolvedAttributes", "find_attributes", "fit_adapter", "resolve_attributes"]


@dataclass
class FitRequest:
    """Everything ``fit`` needs; CLI options map onto these fields one to one.

    ``images`` is a folder or CSV path (str or Path) or a list of (image, label) pairs; ``out``
    None keeps the adapter in memory only (``FitResult.adapter``); ``backbone`` is a name or
    an already loaded backbone (not reloaded). Wrong types raise UsageError on construction.
    """

    images: Path | MemoryImages
    shots: int
    out: Path | None
    attributes: Path | None = None
    backbone: Any = "biomedclip"  # a name, or a loaded biomedvr_cli.backbones.Backbone
    seed: int = 0
    recipe: str = DEFAULT_RECIPE
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    method: MethodConfig = field(default_factory=MethodConfig)
    # "class-names": score against class-name templates and ignore any attributes file (the registry's
    # AR methods, `fit --method ar`); "attributes": the attributes file found, else the templates.
    scorer: str = "attributes"
    val_shots: int | None = None
    device: str = "auto"
    force: bool = False
    allow_fewer: bool = False
    allow_download: bool | None = None
    columns: CsvColumns = field(default_factory=CsvColumns)
    decode: DecodeOptions = field(default_factory=DecodeOptions)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Coerce what has an obvious meaning (a str path) and refuse the rest with a fix (UsageError)."""
        self.images = images_argument(self.images)
        self.shots = as_count(self.shots, "shots", 1,
                              "pass 1 or more images per class to learn from, e.g. --shots 8 (shots=8 in Python)")
        self.out = as_optional_path(self.out, "out", "pass the adapter file to write, e.g. out=\"derm.safetensors\"")
        self.attributes = as_optional_path(self.attributes, "attributes", "pass the attributes JSON file, or None")
        check_backbone_argument(self.backbone)
        self.seed = as_seed(self.seed, "pass --seed 0 (a whole number from 0 to 2**32 - 1)")
        if self.val_shots is not None:
            self.val_shots = as_count(self.val_shots, "val_shots", 0, "pass --val-shots 4, or 0 to keep the last epoch")
        self.recipe = as_text(self.recipe, "recipe", "pass a recipe name such as \"fast\" or \"paper\"")
        if self.scorer not in ("attributes", "class-names"):
            raise UsageError(f"unknown scorer {self.scorer!r}", "pass scorer=\"attributes\" or \"class-names\"")
        self.device = as_text(self.device, "device", "pass \"auto\", \"cpu\", \"cuda\" or \"mps\"")
        for name in ("force", "allow_fewer"):
            setattr(self, name, as_flag(getattr(self, name), name))
        if self.allow_download is not None:  # "no" is truthy: it would allow the download it means to forbid
            self.allow_download = as_flag(self.allow_download, "allow_download")
        kinds = {"recipe_overrides": dict, "method": MethodConfig, "columns": CsvColumns, "decode": DecodeOptions}
        for name, kind in kinds.items():
            if not isinstance(getattr(self, name), kind):
                raise UsageError(f"{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}",
                                 f"pass a {kind.__name__} (see docs/python-api.md)")
        load_recipe(self.recipe).with_overrides(**self.recipe_overrides)  # an unknown name or bad value, now


@dataclass
class FitResult:
    """Summary of a finished fit (also what ``--json`` prints); ``head`` is the trained head, in memory."""

    out: Path | None
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
    vr: dict[str, Any] | None = None  # what the VR stage did (TrainResult.vr)
    estimate_kind: str = "validation"  # what val_accuracy / val_nll are (ValidationRecord.kind)
    head: BioMedVRHead | None = field(default=None, repr=False)
    adapter: Adapter | None = field(default=None, repr=False)  # what was (or, without ``out``, would be) written
    # The files the fit read (images, manifest, attributes, backbone weights): never in to_dict, and
    # never to be replaced by a later save of this fit's adapter.
    input_files: list[Path] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the output name only, never a full path)."""
        return {
            "adapter": self.out.name if self.out is not None else None, "classes": self.classes, "train_images": self.train_images,
            "val_images": self.val_images, "attributes": self.attribute_source, "backbone": self.backbone,
            "recipe": self.recipe, "selected_epoch": self.selected_epoch, "selection_rule": self.selection_rule,
            "feature_head": self.feature_head, "val_accuracy": self.val_accuracy, "val_nll": self.val_nll,
            "estimate_kind": self.estimate_kind, "vr": self.vr,
            "seconds": round(self.seconds, 2), "warnings": self.warnings,
        }


def backbone_record(backbone) -> BackboneRecord:
    """The path-free description of a loaded backbone stored in adapters."""
    spec = backbone.spec
    return BackboneRecord(
        label=backbone.label, fingerprint=backbone.fingerprint, logit_scale=backbone.logit_scale,
        embed_dim=backbone.embed_dim, model=spec.model if spec.kind != "local-dir" else "local-dir",
        pretrained=spec.pretrained if spec.kind in ("preset", "tag") else None, revision=backbone.revision,
    )


def adapter_config(request: FitRequest, backbone, classes: list[str], attributes: ResolvedAttributes,
                   sentences: dict[str, list[str]], head: BioMedVRHead, split: DecodedSplit, recipe: Recipe,
                   result: TrainResult, hashes: tuple[list[str], str]) -> AdapterConfig:
    """The adapter's config for a finished fit (``hashes``: salted pixel hashes of the images used, and the salt)."""
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
        # shots and val_shots as asked (with --allow-fewer a class may have had fewer); the counts say what was used
        training=TrainingRecord(seed=request.seed, shots=request.shots,
                                val_shots=default_val_shots(request.shots) if request.val_shots is None
                                else request.val_shots,
                                train_images=len(split.train), val_images=n_val, recipe=recipe.to_dict(),
                                device=backbone.device.type, seconds=round(result.seconds, 2),
                                image_hashes=hashes[0], image_hash_salt=hashes[1]),
        selection=SelectionRecord(rule=rule, epoch=result.selected_epoch, split="validation" if n_val else "none",
                                  vr=result.vr.to_dict() if result.vr else None, encoder_passes=head.encoder_passes),
        validation=_validation_record(result, n_val),
    )


def _validation_record(result: TrainResult, n_val: int) -> ValidationRecord:
    """The held-out figures that describe the saved model (cross-validated when the head saw validation)."""
    if result.estimate is None:
        return ValidationRecord(accuracy=result.val_accuracy, nll=result.val_nll, images=n_val)
    e = result.estimate
    return ValidationRecord(accuracy=e.accuracy, nll=e.nll, images=e.images, kind=e.kind)


def _check_request(request: FitRequest) -> Recipe:
    request.check()  # fields may have been changed since the request was made
    return load_recipe(request.recipe).with_overrides(**request.recipe_overrides)


def _open_classes(request: FitRequest) -> tuple[ImageInput, list[str], list[str]]:
    """The images, their classes (at least two, none identifier-like) and the skipped-files warning."""
    images = open_images(request.images, request.columns)
    classes = list(images.source.classes)
    if len(classes) < 2:
        raise InvalidInputError(f"found {len(classes)} class(es) in the images",
                                "give at least two classes (one folder per class, or two labels)")
    check_stored_class_names(classes, images.label_kind)  # before any training; the writer checks again
    skipped = images.source.skipped_summary()  # counted by reason: a repeated row is not a missing file
    warnings = [*images.source.notices, *([skipped] if skipped else [])]  # e.g. which column groups the images
    return images, classes, warnings


def _backbone_files(backbone: Any) -> list[Path]:
    """The files a ``local-dir:`` or ``MODEL:WEIGHTS`` backbone is read from (none for presets and hub models)."""
    from biomedvr_cli.backbones.specs import BackboneSpec, parse_backbone

    try:
        spec = parse_backbone(backbone) if isinstance(backbone, str) else getattr(backbone, "spec", None)
    except UsageError:
        return []  # refused with its own message when loaded
    local = spec.local_path if isinstance(spec, BackboneSpec) else None
    if local is None:
        return []
    try:
        return sorted(p for p in Path(local).iterdir() if p.is_file()) if Path(local).is_dir() else [Path(local)]
    except OSError:
        return []


# Training needs autograd and tensors that are not inference tensors, whatever the caller's mode.
@torch.inference_mode(False)
@torch.enable_grad()
@float32_default()
def fit_adapter(
    request: FitRequest,
    *,
    progress: Callable[[EpochReport], None] | None = None,
    notify: Callable[[str], None] = lambda message: None,
    before_write: Callable[[list[str]], None] | None = None,
) -> FitResult:
    """Run a whole fit; write the adapter when ``request.out`` is set. Raises BiomedVRError subclasses on bad input.

    ``before_write`` gets the fit's warnings before the adapter is written (the Python API raises
    them there, so that warnings made errors stop a fit before it writes anything). The global
    random generators (torch, random, numpy) are as they were afterwards.
    """
    recipe = _check_request(request)
    folder = request.images if isinstance(request.images, Path) else None
    templates = request.scorer == "class-names"
    # a bad attributes.json is named before the images are read
    found = (None, "") if templates else find_attributes(folder, request.attributes)
    weights = _backbone_files(request.backbone)  # an export's weights, config and manifest are inputs too
    if request.out is not None:
        refuse_input_as_output(request.out, weights)
    reserved = (reserve_output(request.out, force=request.force, inputs=[folder, request.attributes, found[0], *weights])
                if request.out is not None else contextlib.nullcontext())
    with reserved:
        images, classes, warnings = _open_classes(request)
        if request.out is not None:
            refuse_input_as_output(request.out, images.input_files())  # e.g. --out naming one of the images
        attributes = (ResolvedAttributes(class_name_sentences(classes), "class-name templates") if templates
                      else resolve_attributes(folder, request.attributes, classes, notify, found=found))
        backbone = obtain_backbone(request.backbone, device=request.device, allow_download=request.allow_download)
        if any(torch.is_inference(p) for p in backbone.model.parameters()):
            raise UsageError("the backbone was loaded inside torch.inference_mode(), so nothing can be trained through it",
                             "load it outside that block (biomedvr.load_backbone(...)), then fit inside it if you like")
        with preserved_rng(backbone.device):
            try:
                trained = _train(request, recipe, images, classes, attributes, backbone, progress)
            except InvalidInputError:  # e.g. a class emptied by grouping: which column grouped the images helps
                for warning in warnings:  # the facade's category, as when a fit succeeds
                    warn_at_caller(warning)
                raise
        head, split, result, adapter = trained
        warnings.extend(split.warnings)
        if request.out is not None:
            if before_write is not None:
                before_write(warnings)
            save_adapter(request.out, adapter.tensors, adapter.config, force=request.force)
    return FitResult(
        out=request.out, classes=classes, train_images=len(split.train), val_images=len(split.val),
        attribute_source=attributes.source, selected_epoch=result.selected_epoch, selection_rule=result.selection_rule,
        val_accuracy=adapter.config.validation.accuracy, val_nll=adapter.config.validation.nll, seconds=result.seconds,
        backbone=backbone.label, recipe=recipe.name, warnings=warnings,
        feature_head=result.feature_head.describe() if result.feature_head else None,
        vr=adapter.config.selection.vr, estimate_kind=adapter.config.validation.kind, head=head, adapter=adapter,
        input_files=[*images.input_files(), *(p for p in (request.attributes, found[0]) if p is not None), *weights],
    )


def _train(request: FitRequest, recipe: Recipe, images: ImageInput, classes: list[str], attributes: ResolvedAttributes,
           backbone, progress) -> tuple[BioMedVRHead, DecodedSplit, TrainResult, Adapter]:
    """Draw the split, build and train the head; the adapter it makes (tensors on the CPU, not yet written)."""
    split = draw_readable(images.source.records, classes, request.shots, seed=request.seed, val_shots=request.val_shots,
                          allow_fewer=request.allow_fewer, size=backbone.image_size, options=request.decode,
                          decode=images.decode)
    try:
        head, sentences = build_head(backbone, classes, attributes.sets, request.method, seed=request.seed)
    except ValueError as exc:  # a setting that does not fit this backbone, e.g. a VR frame wider than its input
        raise UsageError(str(exc), "see `biomedvr fit --help`; the frame must fit the backbone's input size") from None
    result = train_head(head, backbone.encode_images, split.train_images, split.labels("train", classes),
                        split.val_images, split.labels("val", classes), recipe, seed=request.seed,
                        device=backbone.device, shots=request.shots, progress=progress)
    salt = new_hash_salt()  # per adapter: its hashes match no other adapter's and no file checksum
    hashes = sorted(pixel_hashes(torch.cat([split.train_images, split.val_images]), salt))
    config = adapter_config(request, backbone, classes, attributes, sentences, head, split, recipe, result,
                            (hashes, salt))
    # Prediction sets and the outlier flag: scores of the labelled images from models that did not see them.
    labelled = LabelledImages(torch.cat([split.train_images, split.val_images]),
                              torch.cat([split.labels("train", classes), split.labels("val", classes)]))
    calibration = calibrate(head, backbone.encode_images, labelled, result, seed=request.seed, device=backbone.device)
    config.calibration = calibration.record()
    tensors = {name: t.detach().to("cpu").clone() for name, t in head.state_dict().items()}
    return head, split, result, Adapter(tensors={**tensors, **calibration.tensors()}, config=config)

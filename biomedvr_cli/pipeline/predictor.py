"""Adapter + frozen backbone -> class probabilities (used by eval, predict and benchmark)."""

from __future__ import annotations

import numbers
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from biomedvr_cli.adapter import Adapter, load_adapter, save_adapter
from biomedvr_cli.atomic import refuse_input_as_output
from biomedvr_cli.backbones import Backbone
from biomedvr_cli.backbones.specs import BackboneSpec
from biomedvr_cli.data import DecodeOptions
from biomedvr_cli.errors import AdapterError, BackboneUnavailableError, UsageError
from biomedvr_cli.method.config import adapter_method
from biomedvr_cli.method.head import BioMedVRHead
from biomedvr_cli.method.textbanks import TextBank
from biomedvr_cli.method.training import predict_logits
from biomedvr_cli.method.trust import CALIBRATION_PREFIXES, Assessment, Calibration, assess, load_calibration
from biomedvr_cli.pipeline.arguments import as_count, as_flag, as_path, obtain_backbone
from biomedvr_cli.pipeline.images import pixels_for
from biomedvr_cli.pipeline.state import float32_default

_IMAGES_HINT = "pass a list of PIL images, numpy arrays (H x W x 3, uint8) or image paths"


def head_from_adapter(adapter: Adapter, feature_dim: int | None = None) -> BioMedVRHead:
    """Rebuild the head from an adapter's config and tensors, checking every shape."""
    config = adapter.config
    method = adapter_method(config.method)
    try:
        classes = list(config.classes)
        sentences = config.attributes.sentences
        banks = {}
        for name, texts in sentences.items():
            emb = adapter.tensors[f"bank_{name}"]
            owner = adapter.tensors[f"owner_{name}"]
            if emb.shape[0] != len(texts) or owner.shape[0] != len(texts):
                raise AdapterError(f"bank {name!r} holds {emb.shape[0]} vectors for {len(texts)} sentences", "refit the adapter")
            banks[name] = TextBank(emb, owner, list(texts))
        _check_class_count(len(classes), {name: adapter.tensors[f"owner_{name}"] for name in sentences})
        dim = feature_dim or int(config.backbone.embed_dim)
        head = BioMedVRHead(method, len(classes), int(config.preprocessing.image_size), dim,
                            float(config.backbone.logit_scale), banks)
        head.load_state_dict({k: v for k, v in adapter.tensors.items() if not k.startswith(CALIBRATION_PREFIXES)},
                             strict=True)
    except AdapterError:
        raise
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
        raise AdapterError(f"the adapter's tensors do not match its config ({_first_reason(exc)})",
                           "the file is damaged or was edited; refit the adapter") from None
    return head


def _check_class_count(n_classes: int, owners: dict[str, torch.Tensor]) -> None:
    """Every sentence must belong to a listed class and every listed class must own a sentence.

    Shapes alone do not catch a config whose class list was edited: the banks are indexed by
    class, so a mismatch would only fail (or silently score nothing) at prediction time.
    """
    owned: set[int] = set()
    for owner in owners.values():
        owned.update(int(i) for i in owner.flatten().tolist())
    stray = sorted(i for i in owned if not 0 <= i < n_classes)
    if stray:
        raise AdapterError(f"the adapter's tensors hold sentences for class index {stray[0]}, but its config lists "
                           f"{n_classes} classes (indices 0 to {n_classes - 1})",
                           "the file is damaged or was edited; refit the adapter")
    unowned = [i for i in range(n_classes) if i not in owned]
    if unowned:  # say which differs: the class count can agree while a class has no sentence
        raise AdapterError(f"the adapter's config lists {n_classes} classes but class {unowned[0] + 1} of {n_classes}"
                           f"{f' (and {len(unowned) - 1} more)' if len(unowned) > 1 else ''} has no sentences in its tensors",
                           "the file is damaged or was edited; refit the adapter")


def _first_reason(exc: BaseException) -> str:
    """The informative line of a torch error (load_state_dict puts the detail on the second line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))), None)
    return (detail or (lines[0] if lines else type(exc).__name__))[:160]


@dataclass
class Explanation:
    """The sentences behind one class's score, and the score split into its two parts (logits)."""

    sentences: dict[str, list[tuple[str, float]]]
    sentence_score: float
    feature_score: float

    @property
    def sentence_share(self) -> float:
        """Fraction of the score's magnitude that came from the sentences (1.0 without a feature head)."""
        total = abs(self.sentence_score) + abs(self.feature_score)
        return 1.0 if total == 0 else abs(self.sentence_score) / total

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``predict --explain``."""
        return {
            "sentences": {k: [{"sentence": s, "cosine": round(v, 4)} for s, v in rows] for k, rows in self.sentences.items()},
            "score": {"sentences": round(self.sentence_score, 4), "feature_head": round(self.feature_score, 4),
                      "total": round(self.sentence_score + self.feature_score, 4),
                      "sentence_share": round(self.sentence_share, 4)},
        }


@dataclass
class Predictor:
    """A fitted adapter on its backbone, ready to classify images (``biomedvr.fit`` and ``biomedvr.load`` return one).

    ``fit_result`` is the fit's summary (a ``FitResult``) when the predictor comes from a fit. ``path`` is
    the adapter file it was loaded from or last saved to (None until then); reports name its file.
    """

    adapter: Adapter
    backbone: Backbone
    head: BioMedVRHead
    fit_result: Any = None
    path: Path | None = None

    @property
    def classes(self) -> list[str]:
        return self.adapter.classes

    @property
    def image_size(self) -> int:
        return self.backbone.image_size

    def __repr__(self) -> str:  # the dataclass form prints every tensor: pages in a notebook
        classes = ", ".join(self.classes[:6]) + (f", ... ({len(self.classes)} classes)" if len(self.classes) > 6 else "")
        return f"Predictor(classes=[{classes}], backbone={self.backbone.label!r}, image_size={self.image_size})"

    @float32_default()
    def classify(self, inputs: Any, *, decode: DecodeOptions = DecodeOptions()) -> list[dict[str, float]]:
        """Class probabilities for images, in input order: ``[{class: probability}, ...]``.

        ``inputs`` is a list of PIL images, numpy arrays or paths, or one of them alone (a
        list of one result comes back). Paths are decoded with the same safe decoder as
        ``predict`` (an unreadable file raises ``InvalidImageError``); every image is resized
        and centre-cropped like every other input (the rules in docs/python-api.md).
        """
        pixels = pixels_for(_as_image_list(inputs), self.image_size, decode)
        if not len(pixels):
            return []
        probs = self.probabilities(pixels)
        return [dict(zip(self.classes, (float(p) for p in row))) for row in probs]

    @float32_default()
    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Softmax probabilities [N, C] for uint8 images [N, 3, S, S] (S: the backbone's input size)."""
        _check_pixels(images, self.image_size, batched=True)
        batch_size = as_count(batch_size, "batch_size", 1, "pass batch_size=256 (images scored at once)")
        logits = predict_logits(self.head, self.backbone.encode_images, images, batch_size=batch_size, device=self.backbone.device)
        probs = torch.softmax(logits, dim=1)
        if not bool(torch.isfinite(probs).all()):  # as in assess(): NaN never reaches classify() or a caller
            raise BackboneUnavailableError("the backbone with this adapter gave non-finite probabilities (NaN or inf): "
                                           "the weights are corrupt", "copy or export the backbone again, or refit the adapter")
        return probs

    @float32_default()
    def predict_sets(self, images: Any, level: float = 0.9, assurance: float | None = None) -> list[list[str]]:
        """Conformal prediction sets: for each image the classes (most probable first) that hold the true one
        with probability at least ``level`` when images are exchangeable with the labelled ones (docs/trust.md).

        ``images`` as for :meth:`classify`, or uint8 pixels [N, 3, S, S]. With ``assurance``, the sets
        are built where this adapter's own coverage reaches ``level`` with that probability over the
        draw of its labelled images (larger sets). An adapter fitted before calibration existed is an
        AdapterError (exit 4): refit it.
        """
        from biomedvr_cli.pipeline.notices import warn_at_caller
        from biomedvr_cli.pipeline.trust import check_assurance, check_level, class_sets, require_calibration, sets_level

        coverage = check_level(level)
        notices = require_calibration(self, coverage=coverage)  # none: AdapterError; full sets or a caveat: warned
        level, level_warnings, _ = sets_level(self, coverage, check_assurance(assurance, coverage))
        for notice in notices + level_warnings:
            warn_at_caller(notice)
        if not isinstance(images, torch.Tensor):
            images = pixels_for(_as_image_list(images), self.image_size)
        return class_sets(self.assess(images, level), self.classes) if len(images) else []

    @cached_property
    def calibration(self) -> Calibration:
        """The adapter's prediction-set and outlier calibration (empty parts for adapters fitted before it)."""
        return load_calibration(self.adapter.tensors, self.adapter.config.calibration, num_classes=len(self.classes),
                                dim=int(self.backbone.embed_dim))

    @float32_default()
    def assess(self, images: torch.Tensor, level: float | None = None, batch_size: int = 256) -> Assessment:
        """Probabilities, prediction sets at ``level`` (None: no sets) and outlier flags for uint8 pixels, in one pass."""
        from biomedvr_cli.pipeline.trust import check_level

        _check_pixels(images, self.image_size, batched=True)
        level = None if level is None else check_level(level)
        batch_size = as_count(batch_size, "batch_size", 1, "pass batch_size=256 (images scored at once)")
        return assess(self.head, self.backbone.encode_images, self.calibration, images, level,
                      device=self.backbone.device, batch_size=batch_size)

    def save(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Write the adapter file (atomically; an existing file needs ``force=True``) and return its path."""
        path = as_path(path, "path", 'pass the adapter file to write, e.g. "derm.safetensors"')
        if self.fit_result is not None:  # the fit's own images, attributes and weights: never, even with force
            refuse_input_as_output(path, getattr(self.fit_result, "input_files", []), option="path")
        save_adapter(path, self.adapter.tensors, self.adapter.config, force=as_flag(force, "force"))
        self.path = path
        if self.fit_result is not None:  # its to_dict() names the adapter file, as `fit --json` does
            self.fit_result.out = path
        return path

    @torch.no_grad()
    @float32_default()
    def explain(self, image: Any, class_index: int | str, top: int = 3) -> Explanation:
        """Why ``class_index`` (an index or a class name) scored as it did: its best-matching
        sentences, the confusion sentences that fired, and how much of its logit came from the
        sentences and from the feature head. ``image``: a uint8 tensor [3, S, S], or a PIL
        image, array or path."""
        if not isinstance(image, torch.Tensor):
            image = pixels_for(_as_image_list(image, single=True), self.image_size)[0]
        _check_pixels(image, self.image_size, batched=False)
        index = self._class_index(class_index)
        top = as_count(top, "top", 1, "pass top=3 (sentences listed per set)")
        return _explain(self, image, index, top)

    def _class_index(self, value: Any) -> int:
        classes = self.classes
        if isinstance(value, str):
            if value not in classes:
                raise UsageError(f"{value!r} is not one of the adapter's classes", f"choose one of {', '.join(classes)}")
            return classes.index(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= int(value) < len(classes):
            raise UsageError(f"class index must be a whole number from 0 to {len(classes) - 1}, got {value!r}",
                             "pass an index into predictor.classes, or a class name")
        return int(value)


def _explain(predictor: Predictor, image: torch.Tensor, class_index: int, top: int) -> Explanation:
    head = predictor.head
    x = image[None].to(predictor.backbone.device).float() / 255.0
    head.eval()
    out = head(x, predictor.backbone.encode_images)
    sentences = predictor.adapter.config.attributes.sentences
    matched: dict[str, list[tuple[str, float]]] = {}
    for name in head.bank_names:
        feats = out.neg_features if name == "confusion" else out.pos_features
        sims = (feats.float() @ getattr(head, f"bank_{name}").t())[0].cpu()
        owner = getattr(head, f"owner_{name}").cpu()
        if name == "confusion":
            idx = torch.arange(len(owner))  # any class's confusion sentence may fire
        else:
            idx = (owner == class_index).nonzero(as_tuple=True)[0]
        order = idx[sims[idx].argsort(descending=True)][:top]
        matched[name] = [(sentences[name][i], float(sims[i])) for i in order]
    feature = 0.0 if out.feature is None else float(out.feature[0, class_index])
    scale = float(head.sentence_scale) if out.feature is not None else 1.0
    return Explanation(matched, scale * float(out.sentences[0, class_index]), feature)


def _as_image_list(inputs: Any, *, single: bool = False) -> list[Any]:
    """A list of images from a list/tuple, or one image alone; ``None`` and strings-as-lists are refused."""
    if inputs is None:
        raise UsageError("no images were given (None)", _IMAGES_HINT)
    if isinstance(inputs, (Image.Image, str, os.PathLike, np.ndarray)):
        return [inputs]
    if single or not isinstance(inputs, (list, tuple)):
        raise UsageError(f"cannot read images from a {type(inputs).__name__}", _IMAGES_HINT)
    return list(inputs)


def _check_pixels(images: Any, size: int, *, batched: bool) -> None:
    """uint8 pixels of the backbone's size: a float or wrongly shaped tensor would give confident nonsense."""
    shape = "[N, 3, S, S]" if batched else "[3, S, S]"
    fix = (f"pass uint8 pixels {shape} with S = {size} (the backbone's input size), or use classify() with "
           "PIL images, arrays or paths")
    if not isinstance(images, torch.Tensor):
        raise UsageError(f"pixels must be a torch tensor {shape}, got {type(images).__name__}", fix)
    if images.dtype != torch.uint8:
        raise UsageError(f"pixels must be uint8 (0..255), got {images.dtype}", fix)
    expected = (3, size, size)
    if images.dim() != (4 if batched else 3) or tuple(images.shape[-3:]) != expected:
        raise UsageError(f"pixels have shape {list(images.shape)}; expected {shape} with S = {size}", fix)


@float32_default()
def load_predictor(adapter_path: Path | str, *, backbone: str | Backbone | None = None, device: str = "auto",
                   allow_download: bool | None = None, accept_preprocessing: bool = False,
                   notify: Callable[[str], None] = lambda message: None) -> Predictor:
    """Load an adapter and the backbone it was trained on (or ``backbone``: a name or a loaded one), and check they match.

    Another normalisation (mean/std) than the adapter's is an AdapterError (exit 4), or with
    ``accept_preprocessing`` a warning through ``notify``; other weights or input size always fail.
    """
    adapter = load_adapter(as_path(adapter_path, "adapter", "pass the .safetensors file `biomedvr fit` wrote"))
    loaded = obtain_backbone(backbone_for(adapter, backbone), device=device, allow_download=allow_download)
    predictor = predictor_for(adapter, loaded, accept_preprocessing=accept_preprocessing, notify=notify)
    predictor.path = Path(adapter_path)
    return predictor


def backbone_for(adapter: Adapter, backbone: str | Backbone | None) -> str | Backbone | BackboneSpec:
    """``backbone`` when given, else the backbone the adapter names (a local one's path is not stored)."""
    if backbone is not None:
        return backbone
    label = adapter.config.backbone.label
    if label == "local-dir" or label.endswith(":local-file"):
        raise UsageError("this adapter was trained on a local backbone whose path is not stored",
                         "pass --backbone (backbone= in Python) with the same local-dir:FOLDER or MODEL:WEIGHTS used for fit")
    from biomedvr_cli.backbones.specs import parse_backbone

    return parse_backbone(label, probe_files=False)  # a stored MODEL:TAG is never a local file of that name


@float32_default()
def predictor_for(adapter: Adapter, backbone: Backbone, *, accept_preprocessing: bool = False,
                  notify: Callable[[str], None] = lambda message: None) -> Predictor:
    """A predictor for an adapter (loaded, or fresh from a fit) on a loaded backbone, after checking they match."""
    from biomedvr_cli.pipeline.notices import Caution

    if not isinstance(adapter, Adapter):
        raise UsageError(f"adapter must be a loaded Adapter, got {type(adapter).__name__}",
                         "load the file with load_predictor(path) or biomedvr.load(path), or pass load_adapter(path)")
    if not isinstance(backbone, Backbone):
        raise UsageError(f"backbone must be a loaded Backbone, got {type(backbone).__name__}",
                         'load one with biomedvr.load_backbone("biomedclip"), or use load_predictor(path, backbone=name)')
    fingerprint = backbone.fingerprint_for(adapter.config.backbone.fingerprint)  # 0.1.0 adapters too
    adapter.check_backbone(fingerprint, backbone.image_size)
    try:
        adapter.check_backbone(fingerprint, backbone.image_size, backbone.mean, backbone.std)
    except AdapterError as exc:
        if not accept_preprocessing:
            raise
        notify(Caution(f"{exc.message}; using the backbone's (--accept-preprocessing)"))
    stored = adapter.config.backbone.logit_scale
    if not math.isclose(stored, backbone.logit_scale, rel_tol=1e-4):  # fit stores the backbone's own
        raise AdapterError(f"this adapter's logit scale {stored:g} is not its backbone's ({backbone.logit_scale:g}): "
                           "the file was edited, and every probability would be wrong", "refit the adapter")
    head = head_from_adapter(adapter, backbone.embed_dim).to(backbone.device)
    head.eval()
    return Predictor(adapter, backbone, head)

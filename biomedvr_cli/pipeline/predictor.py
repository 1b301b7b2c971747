"""Adapter + frozen backbone -> class probabilities (used by eval, predict and benchmark)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from biomedvr_cli.adapter import Adapter, load_adapter
from biomedvr_cli.backbones import Backbone, load_backbone
from biomedvr_cli.data import DecodeOptions, resize_and_crop
from biomedvr_cli.data.decode import decode_image, to_rgb
from biomedvr_cli.errors import AdapterError, UsageError
from biomedvr_cli.method.head import BioMedVRHead, MethodConfig
from biomedvr_cli.method.textbanks import TextBank
from biomedvr_cli.method.training import predict_logits


def head_from_adapter(adapter: Adapter, feature_dim: int | None = None) -> BioMedVRHead:
    """Rebuild the head from an adapter's config and tensors, checking every shape."""
    config = adapter.config
    try:
        method = MethodConfig.from_dict(config.method)
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
        head.load_state_dict(adapter.tensors, strict=True)
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
    """A loaded adapter on its backbone, ready to score decoded images."""

    adapter: Adapter
    backbone: Backbone
    head: BioMedVRHead

    @property
    def classes(self) -> list[str]:
        return self.adapter.classes

    @property
    def image_size(self) -> int:
        return self.backbone.image_size

    def classify(self, inputs: Sequence[Image.Image | str | Path], *,
                 decode: DecodeOptions = DecodeOptions()) -> list[dict[str, float]]:
        """Class probabilities for PIL images or image paths, in input order: ``[{class: probability}]``.

        Paths are decoded with the same safe decoder as ``predict`` (an unreadable file raises
        ``InvalidImageError``); images are resized and centre-cropped like every other input.
        """
        pixels = []
        for item in inputs:
            image = to_rgb(item, "image") if isinstance(item, Image.Image) else decode_image(Path(item), decode)
            pixels.append(torch.from_numpy(np.array(resize_and_crop(image, self.image_size), dtype=np.uint8)).permute(2, 0, 1))
        if not pixels:
            return []
        probs = self.probabilities(torch.stack(pixels))
        return [dict(zip(self.classes, (float(p) for p in row))) for row in probs]

    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Softmax probabilities [N, C] for uint8 images [N,3,S,S]."""
        logits = predict_logits(self.head, self.backbone.encode_images, images, batch_size=batch_size, device=self.backbone.device)
        return torch.softmax(logits, dim=1)

    @torch.no_grad()
    def explain(self, image: torch.Tensor, class_index: int, top: int = 3) -> Explanation:
        """Why ``class_index`` scored as it did: its best-matching sentences, the confusion sentences
        that fired, and how much of its logit came from the sentences and from the feature head."""
        head = self.head
        x = image[None].to(self.backbone.device).float() / 255.0
        head.eval()
        out = head(x, self.backbone.encode_images)
        sentences = self.adapter.config.attributes.sentences
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


def load_predictor(adapter_path: Path, *, backbone: str | None = None, device: str = "auto",
                   allow_download: bool | None = None, accept_preprocessing: bool = False,
                   notify: Callable[[str], None] = lambda message: None) -> Predictor:
    """Load an adapter and the backbone it was trained on (or ``backbone``), and check they match.

    Another normalisation (mean/std) than the adapter's is an AdapterError (exit 4), or with
    ``accept_preprocessing`` a warning through ``notify``; other weights or input size always fail.
    """
    adapter = load_adapter(adapter_path)
    label = backbone or adapter.config.backbone.label
    if backbone is None and (label == "local-dir" or label.endswith(":local-file")):
        raise UsageError("this adapter was trained on a local backbone whose path is not stored",
                         "pass --backbone with the same local-dir:FOLDER or MODEL:WEIGHTS used for fit")
    loaded = load_backbone(label, device=device, allow_download=allow_download)
    fingerprint = loaded.fingerprint_for(adapter.config.backbone.fingerprint)  # 0.1.0 adapters too
    adapter.check_backbone(fingerprint, loaded.image_size)
    try:
        adapter.check_backbone(fingerprint, loaded.image_size, loaded.mean, loaded.std)
    except AdapterError as exc:
        if not accept_preprocessing:
            raise
        notify(f"{exc.message}; using the backbone's (--accept-preprocessing)")
    head = head_from_adapter(adapter, loaded.embed_dim).to(loaded.device)
    head.eval()
    return Predictor(adapter, loaded, head)

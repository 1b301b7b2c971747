"""The adapter's config as typed records, with a JSON round trip.

Each section of the ``config`` JSON stored in the adapter's ``__metadata__`` is a small
dataclass. ``from_dict`` accepts files written by newer minor versions: keys it does not
know are dropped with a :class:`AdapterConfigWarning` (the way PEFT treats unknown keys),
while a missing required section is an :class:`AdapterError`. The method settings stay a
plain dict here, because the method layer (above this one) owns their meaning.
"""

from __future__ import annotations

import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, TypeVar

from biomedvr_cli.errors import AdapterError


class AdapterConfigWarning(UserWarning):
    """An adapter config holds keys this version does not know (written by a newer biomedvr)."""


@dataclass
class BackboneRecord:
    """Which frozen backbone the adapter was trained on."""

    label: str
    fingerprint: str
    logit_scale: float
    embed_dim: int
    model: str | None = None
    pretrained: str | None = None
    revision: str | None = None  # the hub commit of the weights (a pinned preset's); None: shipped/local or older adapter


@dataclass
class Preprocessing:
    """How images were turned into tensors before the VR module."""

    image_size: int
    mean: list[float]
    std: list[float]
    resize: str = "shorter side to image_size, centre crop"


@dataclass
class AttributeRecord:
    """The sentences scored, and where they came from."""

    source: str  # "file" | "class-name templates"
    sentences: dict[str, list[str]]
    task: str = ""
    hash: str | None = None


@dataclass
class TrainingRecord:
    """How the head was trained (never which files: only counts and a digest of identities)."""

    seed: int
    shots: int
    val_shots: int
    train_images: int
    val_images: int
    recipe: dict[str, Any]
    device: str = "cpu"
    seconds: float = 0.0
    image_hashes: list[str] = field(default_factory=list)  # salted pixel hashes of the fitted images (data/hashing.py)
    image_hash_salt: str = ""  # this adapter's random salt; "" in older adapters, whose hashes are of the files


@dataclass
class SelectionRecord:
    """How the kept state was chosen."""

    rule: str
    epoch: int
    split: str = "validation"


@dataclass
class ValidationRecord:
    """Validation metrics of the kept state (None without a validation split)."""

    accuracy: float | None
    nll: float | None
    images: int


@dataclass
class AdapterConfig:
    """Everything an adapter file says about itself (the ``config`` JSON, typed)."""

    biomedvr_version: str
    backbone: BackboneRecord
    preprocessing: Preprocessing
    classes: list[str]
    attributes: AttributeRecord
    method: dict[str, Any]
    training: TrainingRecord
    selection: SelectionRecord
    validation: ValidationRecord
    created_with: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, name: str = "adapter") -> AdapterConfig:
        """Typed config from the stored JSON; unknown keys warn, missing ones are an AdapterError."""
        sections = {
            "backbone": BackboneRecord, "preprocessing": Preprocessing, "attributes": AttributeRecord,
            "training": TrainingRecord, "selection": SelectionRecord, "validation": ValidationRecord,
        }
        values = _known(cls, data, name, "config")
        for key, record in sections.items():
            if key in values:
                if not isinstance(values[key], dict):
                    raise AdapterError(f"{name}: config section {key!r} is not an object", "refit the adapter")
                values[key] = _build(record, _known(record, values[key], name, key), name, key)
        return _build(cls, values, name, "config")


_Record = TypeVar("_Record")


def _known(record: type, data: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    known = {f.name for f in fields(record)}
    unknown = sorted(set(data) - known)
    if unknown:
        warnings.warn(
            f"{name}: ignoring {where} key(s) {', '.join(unknown)} (written by a newer biomedvr?)",
            AdapterConfigWarning, stacklevel=3,
        )
    return {k: v for k, v in data.items() if k in known}


def _build(record: type[_Record], values: dict[str, Any], name: str, where: str) -> _Record:
    try:
        return record(**values)
    except TypeError:
        missing = [f.name for f in fields(record)
                   if f.default is MISSING and f.default_factory is MISSING and f.name not in values]
        raise AdapterError(f"{name}: config {where} lacks {missing}", "refit the adapter with this biomedvr") from None


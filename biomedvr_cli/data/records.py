"""Plain data types shared by the image sources, the sampler and the commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageRecord:
    """One image: where it is, its class, and optionally its split and patient/group id.

    ``group`` exists only to keep one patient's images on one side of a split; it is never
    written to adapters, caches or logs.
    """

    path: Path
    label: str | None
    split: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class CsvColumns:
    """Column names of a CSV manifest.

    When ``group`` keeps its default and the manifest has no ``group`` column, a
    ``patient_id`` or ``patient`` column is used instead.
    """

    path: str = "path"
    label: str = "label"
    split: str = "split"
    group: str = "group"


@dataclass
class ImageSource:
    """What an image folder or manifest holds.

    ``classes`` is sorted and unique. ``skipped`` lists files passed over while listing
    (hidden, not an image, missing) with the reason, so the caller can count and report
    them; it is for the user's terminal only, never to be persisted.
    """

    records: list[ImageRecord]
    classes: list[str]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

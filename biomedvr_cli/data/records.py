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


#: ``CsvColumns(group=NO_GROUP)``: the user said not to group (``--group-column none``).
NO_GROUP = "none"


@dataclass(frozen=True)
class CsvColumns:
    """Column names of a CSV manifest.

    ``group`` None means "not named": a ``group`` column is used when there is one, else a
    column that looks like a patient, case or study id (``PatientID``, ``subject_id``,
    ``StudyInstanceUID`` ...) with a notice naming it; ``NO_GROUP`` turns grouping off. A
    column named explicitly (``split`` other than its default, any ``group``) must exist.
    """

    path: str = "path"
    label: str = "label"
    split: str = "split"
    group: str | None = None


@dataclass
class ImageSource:
    """What an image folder or manifest holds.

    ``classes`` is sorted and unique. ``skipped`` lists files passed over while listing
    (hidden, not an image, missing, listed twice) with the reason, so the caller can count
    and report them; ``notices`` are warnings about the source itself (which column groups
    the images, labels read as one class). Both are for the user's terminal only, never to
    be persisted.
    """

    records: list[ImageRecord]
    classes: list[str]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def skipped_summary(self) -> str | None:
        """One line counting the skipped files by reason, e.g. ``3 file(s) were skipped: 2 listed more than once ...``."""
        return skipped_summary(self.skipped)


def skipped_summary(skipped: list[tuple[Path, str]]) -> str | None:
    """One line counting ``(file, reason)`` pairs by reason, most frequent first; None when there are none."""
    if not skipped:
        return None
    counts: dict[str, int] = {}
    for _, why in skipped:
        counts[why] = counts.get(why, 0) + 1
    parts = [f"{n} {why}" for why, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    return f"{len(skipped)} file(s) were skipped: " + "; ".join(parts)

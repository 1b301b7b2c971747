"""What ``fit`` reads before training: the attributes file it uses, and a support set that decodes.

Attributes are looked up the way a user expects after ``biomedvr attributes``: the
``--attributes`` file, else ``attributes.json`` inside IMAGES, else beside IMAGES, else in
the current folder. Unreadable images are never silently part of the draw: the split is
redrawn from the files that decode, and each skipped file is named with its reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from biomedvr_cli.data import DecodedBatch, DecodeOptions, ImageRecord, decode_to_tensors, sample_few_shot
from biomedvr_cli.data.decode import is_dicom
from biomedvr_cli.data.sampling import default_val_shots
from biomedvr_cli.errors import InvalidInputError
from biomedvr_cli.method.textbanks import class_name_sentences
from biomedvr_cli.pipeline.notices import Caution

ATTRIBUTES_NAME = "attributes.json"


@dataclass
class ResolvedAttributes:
    """Per-class sentence sets plus where they came from."""

    sets: dict[str, dict[str, list[str]]]
    source: str  # "file" | "class-name templates"
    task: str = ""
    content_hash: str | None = None
    path: Path | None = None


def find_attributes(images: Path | None, explicit: Path | None, cwd: Path | None = None) -> tuple[Path | None, str]:
    """The attributes file fit will use and how it was found (``--attributes``, inside, beside, current folder).

    In-memory images (``images`` None) have no folder: only ``explicit`` counts. Something named
    attributes.json that is no regular file (a folder, a FIFO, a link to a device or to nothing)
    is refused like the same path given to ``--attributes``, never passed over silently.
    """
    if explicit is not None:
        return explicit, "--attributes"
    if images is None:
        return None, ""
    folder = images if images.is_dir() else images.parent
    places = [(folder / ATTRIBUTES_NAME, "inside the images folder" if images.is_dir() else "beside the manifest"),
              (folder.parent / ATTRIBUTES_NAME, "beside the images folder"),
              ((cwd or Path.cwd()) / ATTRIBUTES_NAME, "in the current folder")]
    seen: set[Path] = set()
    for path, where in places:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        if _found(path, where):
            return path, where
    return None, ""


def _found(path: Path, where: str) -> bool:
    """True for a regular file (or a link to one), False when nothing has the name; else refused (exit 3)."""
    if path.is_file():
        return True
    if not path.is_symlink() and not path.exists():
        return False
    what = ("a folder" if path.is_dir() else "a link to nothing" if not path.exists()
            else "not a regular file (a pipe, socket or device)")
    raise InvalidInputError(
        f"{ATTRIBUTES_NAME} {where} is {what}, so no attributes can be read from it",
        f"remove or rename that {ATTRIBUTES_NAME} (fit looks for one inside and beside the images and in the current "
        "folder), or pass --attributes with the attributes JSON file",
    )


def resolve_attributes(images: Path | None, explicit: Path | None, classes: list[str],
                       notify: Callable[[str], None], *, found: tuple[Path | None, str] | None = None) -> ResolvedAttributes:
    """The sentence sets for ``classes``: from the attributes file found, else class-name templates.

    ``found`` is an earlier :func:`find_attributes` answer (fit looks before reading the images).
    The class-name fallback is announced as a :class:`Caution`: the library raises it as a warning.
    """
    from biomedvr_cli.attributes import load_attributes

    path, where = found if found is not None else find_attributes(images, explicit)
    if path is None:
        looked = ("looked inside and beside the images and in the current folder" if images is not None
                  else "none given for in-memory images")
        notify(Caution(f"no attributes file ({looked}): scoring against class-name templates, the AR baseline; "
                       "run `biomedvr attributes` and pass its file (--attributes, or attributes= in Python) for BioMedVR"))
        return ResolvedAttributes(class_name_sentences(classes), "class-name templates")
    attrs = load_attributes(path)
    missing = [c for c in classes if c not in attrs.classes]
    extra = [c for c in attrs.classes if c not in classes]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"image classes missing from {path.name}: {', '.join(missing)}")
        if extra:
            parts.append(f"classes in {path.name} with no images: {', '.join(extra)}")
        found_as = "" if explicit is not None else f" found {where}"  # a file fit found itself may be unexpected
        raise InvalidInputError(
            f"classes do not match the attributes file{found_as} (" + "; ".join(parts) + ")",
            "make the class folder/label names and the attribute file's class names identical, or pass --attributes"
            + ("" if explicit is not None else f" with the right file (fit looked for {ATTRIBUTES_NAME} inside and "
               "beside the images and in the current folder)"),
        )
    if explicit is None:
        notify(f"using attributes from {path.name} {where}")
    return ResolvedAttributes(attrs.sentence_sets(classes), "file", attrs.task, attrs.content_hash(), path)


@dataclass
class DecodedSplit:
    """The drawn support and validation images, decoded, and what was skipped on the way."""

    train: list[ImageRecord]
    val: list[ImageRecord]
    train_images: torch.Tensor
    val_images: torch.Tensor
    warnings: list[str] = field(default_factory=list)

    def labels(self, which: str, classes: list[str]) -> torch.Tensor:
        """Class indices of the ``train`` or ``val`` records."""
        index = {c: i for i, c in enumerate(classes)}
        return torch.tensor([index[r.label] for r in getattr(self, which)], dtype=torch.long)


def _decode_files(records: list[ImageRecord], size: int, options: DecodeOptions) -> DecodedBatch:
    return decode_to_tensors([r.path for r in records], size, options)


def draw_readable(records: list[ImageRecord], classes: list[str], shots: int, *, seed: int, val_shots: int | None,
                  allow_fewer: bool, size: int, options: DecodeOptions,
                  decode: Callable[[list[ImageRecord], int, DecodeOptions], DecodedBatch] = _decode_files) -> DecodedSplit:
    """Draw K + V images per class from files that decode; an unreadable pick is replaced by a redraw.

    The draw depends only on the seed and the set of readable records, so the result equals a
    draw from a folder where the unreadable files had never been. ``decode`` turns records into
    pixels (files by default; in-memory images pass their own).
    """
    pool = list(records)
    decoded: dict[Path, torch.Tensor] = {}
    skipped: list[str] = []
    while True:
        # A class made too small by unreadable files says so (never "has N usable images" when they are not).
        left = {id(r) for r in pool}
        unreadable = [r for r in records if id(r) not in left] if len(pool) < len(records) else []
        try:
            split = sample_few_shot(pool, classes, shots, seed=seed, val_shots=val_shots, allow_fewer=allow_fewer,
                                    unreadable=unreadable)
        except InvalidInputError as exc:
            if not unreadable:
                raise
            # Too few, counting files not tried yet: try them (only the short classes, which are small) and
            # draw again, so the error counts readable images and its fix can work.
            needed = shots + (default_val_shots(shots) if val_shots is None else val_shots)
            newly = _try_short_classes(pool, decoded, needed, size, options, decode)
            if not newly:
                raise _with_reason(exc, skipped) from None
            skipped.extend(reason for _, reason in newly)
            bad = {str(path) for path, _ in newly}
            pool = [r for r in pool if str(r.path) not in bad]
            continue
        todo = [r for r in split.train + split.val if r.path not in decoded]
        batch = decode(todo, size, options)
        for row, i in enumerate(batch.kept):
            decoded[todo[i].path] = batch.images[row]
        if not batch.failures:
            break
        bad = {str(path) for path, _ in batch.failures}
        skipped.extend(reason for _, reason in batch.failures)
        pool = [r for r in pool if str(r.path) not in bad]
    warnings = list(split.warnings) + window_unused([r.path for r in split.train + split.val], options)
    if skipped:
        warnings.append(f"{len(skipped)} unreadable image(s) were skipped and replaced in the draw: " + "; ".join(skipped[:5])
                        + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""))

    def stack(chosen: list[ImageRecord]) -> torch.Tensor:
        return torch.stack([decoded[r.path] for r in chosen]) if chosen else torch.empty(0, 3, size, size, dtype=torch.uint8)

    return DecodedSplit(split.train, split.val, stack(split.train), stack(split.val), warnings)


def _with_reason(exc: InvalidInputError, skipped: list[str]) -> InvalidInputError:
    """The draw's error with why the first unreadable image was left out (over the pixel cap, say): adding
    images is not always the fix."""
    if not skipped:
        return exc
    reason, fix = skipped[0], ""
    if " (fix: " in reason and reason.endswith(")"):  # the image's own fix becomes the error's
        reason, _, fix = reason[:-1].rpartition(" (fix: ")
    fix = fix or "fix or replace the unreadable images"
    return InvalidInputError(f"{exc.message}; the first unreadable image: {reason}",
                             f"{fix}; or {exc.hint}" if exc.hint else fix)


def _try_short_classes(pool: list[ImageRecord], decoded: dict[Path, torch.Tensor], needed: int, size: int,
                       options: DecodeOptions, decode) -> list[tuple[Path, str]]:
    """Decode the untried images of every class with fewer than ``needed`` in ``pool``; return the failures."""
    by_class: dict[str | None, list[ImageRecord]] = {}
    for record in pool:
        if record.split != "test":  # test images are never drawn, so they count for nothing here
            by_class.setdefault(record.label, []).append(record)
    todo = [r for rows in by_class.values() if len(rows) < needed for r in rows if r.path not in decoded]
    if not todo:
        return []
    batch = decode(todo, size, options)
    for row, i in enumerate(batch.kept):
        decoded[todo[i].path] = batch.images[row]
    return list(batch.failures)


def window_unused(paths: list[Path], options: DecodeOptions) -> list[str]:
    """A caution when a DICOM window was given but some images are not DICOM (it cannot apply to them)."""
    if options.window is None or not paths:
        return []
    others = sum(1 for path in paths if not is_dicom(Path(path)))
    if not others:
        return []
    return [Caution(f"--window applies to greyscale DICOM only: {others} of {len(paths)} image(s) are not DICOM "
                    "and were read without it")]


def image_hashes(records: list[ImageRecord], *, sort: bool = True) -> list[str]:
    """Short content hashes of image files (sorted by default): lets ``eval`` spot reuse without storing any path."""
    out = []
    for record in records:
        digest = hashlib.sha256()
        with open(record.path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        out.append(digest.hexdigest()[:16])
    return sorted(out) if sort else out

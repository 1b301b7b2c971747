"""Labelled images for fit and eval: a folder or CSV on disk, or (image, label) pairs in memory.

Both kinds give the same :class:`ImageSource` of records, so the few-shot draw, the split
rules and the checks are the data layer's, unchanged. What differs is only how a record
becomes pixels (:meth:`decode`) and its content hash (:meth:`hashes`). In-memory records
are named ``images[i]`` (their index in the list), which is also what messages show.

In-memory images follow the file rules (docs/your-images.md): a PIL image of any mode is
converted like a decoded file; a uint8 array (``H x W``, ``H x W x 1|3|4``) is used as is;
other greyscale arrays (uint16, int, float, bool) are scaled from their own minimum and
maximum to 0..255, as 16-bit and float files are; colour arrays must be uint8, because
``0..1`` and ``0..255`` floats cannot be told apart. A path in a pair is decoded like a file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from biomedvr_cli.data import CsvColumns, DecodeOptions, DecodedBatch, ImageRecord, ImageSource, decode_to_tensors, open_source
from biomedvr_cli.data.decode import decode_image, to_rgb
from biomedvr_cli.data.labels import canonical_label, check_distinct_labels
from biomedvr_cli.data.manifest import group_key
from biomedvr_cli.data.scaling import minmax_to_uint8
from biomedvr_cli.data.tensors import resize_and_crop
from biomedvr_cli.errors import InvalidInputError, UsageError
from biomedvr_cli.pipeline.fit_inputs import image_hashes

_ITEM_HINT = "pass PIL images, numpy arrays (H x W or H x W x 3, uint8) or image paths"
_PAIRS_HINT = ('pass a list of (image, label) pairs, e.g. [(Image.open("a.png"), "benign"), (array, "malignant")], '
               'or (image, label, patient_id) triples')


def check_picture(item: Any, name: str) -> None:
    """Refuse what cannot be an image before any work: wrong types, shapes and colour dtypes."""
    if isinstance(item, (Image.Image, Path)) or (isinstance(item, (str, os.PathLike)) and not isinstance(item, bytes)):
        return
    if isinstance(item, torch.Tensor):
        raise UsageError(f"{name} is a torch tensor",
                         "pass a numpy array (H x W x 3: tensor.permute(1, 2, 0).numpy()) or a PIL image; "
                         "Predictor.probabilities takes uint8 tensors [N, 3, S, S]")
    if not isinstance(item, np.ndarray):
        raise UsageError(f"{name} is a {type(item).__name__}, not an image", _ITEM_HINT)
    if item.size == 0 or item.ndim not in (2, 3):
        raise InvalidInputError(f"{name} is an array of shape {tuple(item.shape)}, not an image", _ITEM_HINT)
    if item.ndim == 3 and item.shape[2] not in (1, 3, 4):
        fix = "transpose it to H x W x C: array.transpose(1, 2, 0)" if item.shape[0] in (1, 3, 4) else _ITEM_HINT
        raise InvalidInputError(f"{name} has {item.shape[2]} channels in its last axis (shape {tuple(item.shape)})", fix)
    if item.dtype.kind not in "buif":
        raise InvalidInputError(f"{name} has dtype {item.dtype}, not numbers", _ITEM_HINT)
    if item.dtype.kind == "f" and not bool(np.isfinite(item).all()):  # its scaling to 0..255 would be undefined
        raise InvalidInputError(f"{name} holds NaN or infinite values",
                                "replace them first, e.g. np.nan_to_num(array, nan=array[np.isfinite(array)].min())")
    if item.ndim == 3 and item.shape[2] > 1 and item.dtype != np.uint8:
        raise InvalidInputError(f"{name} is a colour array of dtype {item.dtype}; colour arrays must be uint8",
                                "convert it: (array * 255).round().astype('uint8') for values in 0..1, "
                                "or array.astype('uint8') for 0..255")


def to_picture(item: Any, name: str, options: DecodeOptions = DecodeOptions()) -> Image.Image:
    """An 8-bit RGB picture from a PIL image, an array or a path (decoded like any file)."""
    check_picture(item, name)
    if isinstance(item, Image.Image):
        return to_rgb(item, name)
    if not isinstance(item, np.ndarray):
        return decode_image(Path(os.fspath(item)), options)
    array = item[:, :, 0] if item.ndim == 3 and item.shape[2] == 1 else item
    if array.dtype != np.uint8:
        array = minmax_to_uint8(array)  # greyscale of another depth: the rule for 16-bit and float files
    return to_rgb(Image.fromarray(np.ascontiguousarray(array)), name)


def picture_tensor(picture: Image.Image, size: int) -> torch.Tensor:
    """uint8 ``[3, size, size]``: resized and centre-cropped like every decoded file."""
    return torch.from_numpy(np.array(resize_and_crop(picture, size), dtype=np.uint8)).permute(2, 0, 1)


def pixels_for(items: Sequence[Any], size: int, options: DecodeOptions = DecodeOptions()) -> torch.Tensor:
    """uint8 ``[N, 3, size, size]`` for images, arrays or paths; an unreadable one raises its error, with a fix."""
    tensors = []
    for i, item in enumerate(items):
        try:
            tensors.append(picture_tensor(to_picture(item, f"image {i}", options), size))
        except InvalidInputError as exc:
            if exc.hint:
                raise
            raise type(exc)(exc.message, "check that the file is a readable image, or leave it out "
                                         "(predict_files reports an unreadable file in its row and goes on)") from None
    return torch.stack(tensors) if tensors else torch.empty(0, 3, size, size, dtype=torch.uint8)


def pixel_hash(picture: Image.Image) -> str:
    """A short hash of decoded pixels (an in-memory image has no file bytes), never of a path."""
    digest = hashlib.sha256(f"{picture.width}x{picture.height}:".encode())
    digest.update(picture.tobytes())
    return digest.hexdigest()[:16]


@dataclass
class FileImages:
    """A class-per-folder tree or a CSV manifest on disk."""

    path: Path
    source: ImageSource
    label_kind: str = "class folder"  # how class names are named in messages

    @property
    def folder(self) -> Path | None:
        return self.path

    def decode(self, records: Sequence[ImageRecord], size: int, options: DecodeOptions) -> DecodedBatch:
        return decode_to_tensors([r.path for r in records], size, options)

    def hashes(self, records: Sequence[ImageRecord], *, sort: bool = True) -> list[str]:
        return image_hashes(list(records), sort=sort)

    def input_files(self) -> list[Path]:
        """The files this run reads (an output must be none of them)."""
        return [self.path, *(r.path for r in self.source.records)]


@dataclass
class MemoryImages:
    """(image, label) pairs, or (image, label, group) triples, held in memory; records are named ``images[i]``.

    ``groups`` (patient ids, folded as a CSV's group cells are; None for an image of its own) keep
    one patient's images on one side of the draw; they are never stored or shown.
    """

    items: list[Any]
    labels: list[str]
    groups: list[str | None] | None = None
    source: ImageSource = field(init=False)
    label_kind: str = "label"

    def __post_init__(self) -> None:
        groups = self.groups or [None] * len(self.labels)
        records = [ImageRecord(path=Path(f"images[{i}]"), label=label, group=group)
                   for i, (label, group) in enumerate(zip(self.labels, groups))]
        self.source = ImageSource(records=records, classes=sorted(set(self.labels)))

    @property
    def folder(self) -> Path | None:
        return None  # no folder to look for attributes.json in

    def _item(self, record: ImageRecord) -> tuple[int, Any]:
        index = int(record.path.name[len("images["):-1])
        return index, self.items[index]

    def decode(self, records: Sequence[ImageRecord], size: int, options: DecodeOptions) -> DecodedBatch:
        """Pixels of ``records``; a path that cannot be decoded is a failure (redrawn), as on disk."""
        kept, tensors, failures = [], [], []
        for position, record in enumerate(records):
            index, item = self._item(record)
            try:
                tensors.append(picture_tensor(to_picture(item, record.path.name, options), size))
            except InvalidInputError as exc:
                if not isinstance(item, (str, os.PathLike)):
                    raise  # arrays and images were checked up front; this is no file to skip
                failures.append((record.path, exc.one_line()))
                continue
            kept.append(position)
        images = torch.stack(tensors) if tensors else torch.empty(0, 3, size, size, dtype=torch.uint8)
        return DecodedBatch(images=images, kept=kept, failures=failures)

    def input_files(self) -> list[Path]:
        """The files among the pairs, paths and the files PIL images were opened from (an output must be none of them)."""
        files = [item if isinstance(item, (str, os.PathLike)) else getattr(item, "filename", None) if isinstance(
            item, Image.Image) else None for item in self.items]
        return [Path(os.fspath(f)) for f in files if isinstance(f, (str, os.PathLike)) and f]

    def hashes(self, records: Sequence[ImageRecord], *, sort: bool = True) -> list[str]:
        """Content hashes: a path's like any file's, an image's or array's from its pixels."""
        out = []
        for record in records:
            _, item = self._item(record)
            if isinstance(item, (str, os.PathLike)):
                out.extend(image_hashes([ImageRecord(path=Path(os.fspath(item)), label=record.label)], sort=False))
            else:
                out.append(pixel_hash(to_picture(item, record.path.name)))
        return sorted(out) if sort else out


ImageInput = FileImages | MemoryImages


def memory_images(pairs: Any) -> MemoryImages:
    """Check (image, label) pairs (types, shapes, labels) without decoding any pixels yet."""
    if not isinstance(pairs, (list, tuple)):
        raise UsageError(f"in-memory images must be a list of (image, label) pairs, got {type(pairs).__name__}", _PAIRS_HINT)
    if not pairs:
        raise InvalidInputError("the list of images is empty", _PAIRS_HINT)
    items, labels, groups = [], [], []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (list, tuple)) or len(pair) not in (2, 3):
            raise UsageError(f"images[{i}] is not an (image, label) pair or (image, label, patient) triple", _PAIRS_HINT)
        item, label = pair[:2]
        groups.append(_group_of(pair[2], i) if len(pair) == 3 else None)
        check_picture(item, f"images[{i}]")
        if not isinstance(label, str) or not label.strip():
            raise UsageError(f"the label of images[{i}] must be a class name (non-empty text), got {type(label).__name__}",
                             "map numeric labels to class names first, e.g. {0: 'benign', 1: 'malignant'}[label]; "
                             "the names are matched against the attribute sentences")
        items.append(item)
        labels.append(canonical_label(label))  # the rule of folder names and CSV cells: one spelling per class
    check_distinct_labels(labels, "images", "label")
    return MemoryImages(items, labels, groups if any(g is not None for g in groups) else None)


def _group_of(value: Any, index: int) -> str | None:
    """A triple's patient id as a group key: text or a whole number (numpy's and pandas' too, and a float
    with no fraction, as a DataFrame column with a missing cell holds them); None, "" or NaN (a missing
    cell) for an image of its own."""
    import math
    import numbers

    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, np.generic):
        value = value.item()  # numpy's int64, float64, str_ as Python's
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Integral)):
        raise UsageError(f"the patient id of images[{index}] must be text or a whole number, got {type(value).__name__}",
                         'pass (image, label, "P-017"), or None for an image that shares no patient')
    return group_key(str(int(value)) if isinstance(value, numbers.Integral) else value)


def open_images(images: Path | MemoryImages, columns: CsvColumns = CsvColumns()) -> ImageInput:
    """The labelled images of a fit or eval: a folder tree or CSV (read now), or in-memory pairs."""
    if isinstance(images, MemoryImages):
        if columns != CsvColumns():
            raise UsageError("path_column, label_column, split_column and group_column apply to a CSV manifest only, "
                             "not to in-memory (image, label) pairs",
                             "leave them out; to keep each patient's images together, pass (image, label, patient_id) "
                             "triples")
        return images
    label_kind = "class folder" if Path(images).is_dir() else "label"
    return FileImages(Path(images), open_source(images, columns=columns), label_kind)


def images_argument(value: Any) -> Path | MemoryImages:
    """What a caller may pass as ``images``: a folder or CSV path (str or PathLike), or (image, label) pairs."""
    from biomedvr_cli.pipeline.arguments import as_path

    if isinstance(value, MemoryImages):
        return value
    if isinstance(value, (list, tuple)):
        return memory_images(value)
    return as_path(value, "images", "pass a class-per-folder tree or CSV manifest (a path), or a list of "
                                    "(image, label) pairs")

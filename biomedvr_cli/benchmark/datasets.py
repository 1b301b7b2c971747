"""Benchmark datasets: the training pool, the test set and the attributes, with per-process caches.

Each image is decoded once per process and size, and each frozen image feature is
computed once per process and backbone (zero-shot, linear probe and CoOp share them),
however many jobs use it. Sandbox tasks are generated in memory from their data seed, after
their size is checked against ``limits.MAX_SANDBOX_BYTES``. Class names (folder names or
labels) pass the identifier check before they reach any report.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from biomedvr_cli.attributes.privacy import check_stored_class_names
from biomedvr_cli.benchmark.limits import check_sandbox_size
from biomedvr_cli.benchmark.protocol import DatasetSpec
from biomedvr_cli.data import CsvColumns, DecodeOptions, ImageRecord, decode_to_tensors, open_source, test_records
from biomedvr_cli.data.manifest import same_file_key
from biomedvr_cli.data.sampling import without_test_groups
from biomedvr_cli.errors import InvalidInputError
from biomedvr_cli.pipeline.fit import ResolvedAttributes, resolve_attributes
from biomedvr_cli.pipeline.notices import Caution
from biomedvr_cli.method.textbanks import class_name_sentences

Notify = Callable[[str], None]


@dataclass
class LoadedDataset:
    """Everything a job needs from one dataset; pixels and features are cached on first use."""

    spec: DatasetSpec
    classes: list[str]
    pool: list[ImageRecord]  # support and validation sets are drawn from these
    test: list[ImageRecord]
    attributes: ResolvedAttributes  # source "file", or class-name templates when there is no file
    fingerprint: str
    _arrays: dict[str, np.ndarray] | None = None  # sandbox: record path -> HWC uint8 pixels
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    notify: Notify = lambda message: None
    _pixels: dict[tuple[str, int], torch.Tensor | None] = field(default_factory=dict)
    _features: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)

    @property
    def has_attributes(self) -> bool:
        return self.attributes.source == "file"

    def class_name_sets(self) -> dict[str, dict[str, list[str]]]:
        return class_name_sentences(self.classes)

    def labels(self, records: list[ImageRecord]) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.classes)}
        return torch.tensor([index[r.label] for r in records], dtype=torch.long)

    def _load_missing(self, records: list[ImageRecord], size: int) -> None:
        missing = [r for r in records if (str(r.path), size) not in self._pixels]
        if not missing:
            return
        if self._arrays is not None:
            for r in missing:
                self._pixels[(str(r.path), size)] = _array_to_tensor(self._arrays[str(r.path)], size)
            return
        batch = decode_to_tensors([r.path for r in missing], size, self.decode)
        for row, i in enumerate(batch.kept):
            self._pixels[(str(missing[i].path), size)] = batch.images[row]
        kept = set(batch.kept)
        for i, r in enumerate(missing):
            if i not in kept:
                self._pixels[(str(r.path), size)] = None
        if batch.failures:
            self.notify(f"{self.spec.name}: {len(batch.failures)} image(s) could not be read and are left out")

    def pixels(self, records: list[ImageRecord], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images [N,3,S,S] and labels [N] of the readable ``records`` (decoded once, then cached)."""
        self._load_missing(records, size)
        rows = [(self._pixels[(str(r.path), size)], r) for r in records]
        rows = [(t, r) for t, r in rows if t is not None]
        if not rows:
            return torch.empty(0, 3, size, size, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
        return torch.stack([t for t, _ in rows]), self.labels([r for _, r in rows])

    def readable(self, records: list[ImageRecord], size: int) -> int:
        """How many of ``records`` decode (decoded once, then cached; nothing is stacked)."""
        self._load_missing(records, size)
        return sum(1 for r in records if self._pixels[(str(r.path), size)] is not None)

    def features(self, backbone, records: list[ImageRecord]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen L2-normalised image features [N, D] (CPU) and labels, computed once per backbone."""
        from biomedvr_cli.method.zero_shot import image_features

        fp = backbone.fingerprint
        self._load_missing(records, backbone.image_size)
        readable = [r for r in records if self._pixels[(str(r.path), backbone.image_size)] is not None]
        todo = [r for r in readable if (fp, str(r.path)) not in self._features]
        if todo:
            images, _ = self.pixels(todo, backbone.image_size)
            feats = image_features(backbone, images)
            for r, f in zip(todo, feats):
                self._features[(fp, str(r.path))] = f
        if not readable:
            return torch.empty(0, backbone.embed_dim), torch.empty(0, dtype=torch.long)
        return torch.stack([self._features[(fp, str(r.path))] for r in readable]), self.labels(readable)


def _array_to_tensor(array: np.ndarray, size: int) -> torch.Tensor:
    if array.shape[0] != size or array.shape[1] != size:
        from PIL import Image

        from biomedvr_cli.data import resize_and_crop

        array = np.array(resize_and_crop(Image.fromarray(array), size), dtype=np.uint8)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def _hash(parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _record_identity(record: ImageRecord, root: Path) -> list:
    try:
        name = str(record.path.resolve().relative_to(root))
    except ValueError:
        name = record.path.name
    try:
        size = record.path.stat().st_size
    except OSError:
        size = -1
    return [name, record.label, record.split, size]


def _without_test_files(pool: list[ImageRecord], test: list[ImageRecord], name: str,
                        notify: Notify) -> list[ImageRecord]:
    """The pool less every file that is also a test image (however its path is spelt): the test set
    must stay unseen, or a method is scored on images it was fitted on."""
    folders: dict[str, str] = {}
    tested = {same_file_key(r.path, folders) for r in test}
    kept = [r for r in pool if same_file_key(r.path, folders) not in tested]
    if len(kept) < len(pool):
        notify(Caution(f"{name}: {len(pool) - len(kept)} of the training images are also test images; they are "
                       "left out of the support pool, so that no method is scored on an image it saw"))
    return kept


def _load_files(spec: DatasetSpec, notify: Notify, decode: DecodeOptions) -> LoadedDataset:
    assert spec.images is not None
    columns = CsvColumns(path=spec.path_column, label=spec.label_column, split=spec.split_column,
                         group=spec.group_column)
    # The column options describe whichever of the two is a CSV; a folder has none (given for folders
    # only, they are refused by open_source rather than ignored).
    test_is_csv = spec.test is not None and not spec.test.is_dir()
    source = open_source(spec.images, columns=CsvColumns() if spec.images.is_dir() and test_is_csv else columns)
    classes = list(source.classes)
    if len(classes) < 2:
        raise InvalidInputError(f"{spec.name}: found {len(classes)} class(es)", "give at least two classes")
    try:  # class names reach the reports and job files
        check_stored_class_names(classes, "class folder" if spec.images.is_dir() else "label")
    except InvalidInputError as exc:
        raise InvalidInputError(f"{spec.name}: {exc.message}", exc.hint) from None
    if spec.test is not None:
        test_source = open_source(spec.test, columns=columns if test_is_csv else CsvColumns())
        unknown = sorted(set(test_source.classes) - set(classes))
        if unknown:
            raise InvalidInputError(f"{spec.name}: test classes not in the training images: {', '.join(unknown)}",
                                    "use the same class names for the training and test images")
        test = list(test_source.records)
        pool = _without_test_files([r for r in source.records if r.split != "test"], test, spec.name, notify)
    else:
        test = test_records(source.records)
        pool = [r for r in source.records if r.split != "test"]
        if not test:
            raise InvalidInputError(f"{spec.name}: the images have no test split",
                                    "pass --test IMAGES (or a 'test' entry in the suite), or add a test/ folder or split column")
    pool, leak = without_test_groups(pool, test)  # no patient/group on both sides of the support/test split
    for notice in [*source.notices, *([leak] if leak else [])]:  # which column groups, what was left out
        notify(Caution(f"{spec.name}: {notice}"))
    attributes = resolve_attributes(spec.images, spec.attributes, classes, notify)
    root = (spec.images if spec.images.is_dir() else spec.images.parent).resolve()
    test_root = ((spec.test if spec.test.is_dir() else spec.test.parent).resolve() if spec.test else root)
    fingerprint = _hash({"classes": classes, "pool": sorted(_record_identity(r, root) for r in pool),
                         "test": sorted(_record_identity(r, test_root) for r in test),
                         "attributes": attributes.content_hash})
    return LoadedDataset(spec, classes, pool, test, attributes, fingerprint, decode=decode, notify=notify)


def _load_sandbox(spec: DatasetSpec, notify: Notify) -> LoadedDataset:
    from biomedvr_cli.attributes import load_attributes
    from biomedvr_cli.sandbox.tasks import generate_task_arrays, load_task, parse_shift

    task = load_task(spec.sandbox_task)
    shift = task.default_shift if spec.shift == "default" else spec.shift
    parse_shift(shift)
    classes = task.class_names
    check_sandbox_size(spec.name, len(classes), spec.pool_per_class, spec.test_per_class, task.image_size)
    arrays: dict[str, np.ndarray] = {}
    records: dict[str, list[ImageRecord]] = {}
    for split, n in (("train", spec.pool_per_class), ("test", spec.test_per_class)):
        images, labels = generate_task_arrays(task, n, spec.data_seed, shift, split=split)
        records[split] = []
        for i, (img, y) in enumerate(zip(images, labels)):
            path = Path("sandbox") / task.name / shift / split / f"{i:05d}.png"
            arrays[str(path)] = img
            records[split].append(ImageRecord(path, classes[int(y)], split))
    attr_path = spec.attributes or task.attributes_path()
    if attr_path is None:
        attributes = ResolvedAttributes(class_name_sentences(classes), "class-name templates", "", None)
    else:
        attrs = load_attributes(attr_path)
        missing = [c for c in classes if c not in attrs.classes]
        if missing:
            raise InvalidInputError(f"{spec.name}: attributes file lacks class(es) {', '.join(missing)}",
                                    "use an attributes file written for this task")
        sets = {c: {"descriptive": list(attrs.classes[c].descriptive), "distinctive": list(attrs.classes[c].distinctive),
                    "confusion": list(attrs.classes[c].confusion)} for c in classes}
        attributes = ResolvedAttributes(sets, "file", attrs.task, attrs.content_hash())
    task_doc = json.loads(task.source.read_text(encoding="utf-8")) if task.source else task.name
    fingerprint = _hash({"task": task_doc, "shift": shift, "pool": spec.pool_per_class, "test": spec.test_per_class,
                         "data_seed": spec.data_seed, "attributes": attributes.content_hash})
    return LoadedDataset(spec, classes, records["train"], records["test"], attributes, fingerprint, _arrays=arrays,
                         notify=notify)


def load_dataset(spec: DatasetSpec, *, notify: Notify = lambda message: None,
                 decode: DecodeOptions = DecodeOptions()) -> LoadedDataset:
    """Open a dataset (listing files or generating a sandbox task); pixels are decoded lazily."""
    return _load_sandbox(spec, notify) if spec.is_sandbox else _load_files(spec, notify, decode)

"""Bounds on every size a suite file or a ``benchmark`` option can ask for, checked before anything is allocated.

A suite that asks for a billion sandbox images per class, or a trillion seeds, would grow
until the machine runs out of memory (and ignore Ctrl-C while one huge array is filled);
here it is refused at once with the field, its value and its limit. The limits sit far above
any real protocol (the paper's: 11 datasets x 20 methods x 5 shots x 3 seeds) and are
documented in docs/benchmark.md. Suite errors are exit 3 and name the suite file and the
field (``suite.json: datasets[0].pool_per_class``); command-line errors are exit 2 and name
the option.
"""

from __future__ import annotations

import math
from typing import Any

from biomedvr_cli.attributes.privacy import check_stored_text
from biomedvr_cli.errors import InvalidInputError, UsageError

MAX_DATASETS = 100
MAX_METHOD_NAMES = 100
MAX_SHOTS = 1000  # images per class; few-shot methods, and a class rarely has more labelled images
MAX_SHOT_VALUES = 32
MAX_SEEDS = 100
MAX_EPOCHS = 10_000
MAX_EPOCH_SCALE = 100.0
MAX_BATCH_SIZE = 4096
MAX_PER_CLASS = 5000  # sandbox pool_per_class and test_per_class
MAX_DATA_SEED = 2**32 - 1
MAX_JOBS = 100_000
MAX_SANDBOX_BYTES = 2 * 2**30  # pixels of one generated sandbox dataset, pool and test together
MAX_NAME_CHARS = 100
MAX_TEXT_CHARS = 1000  # backbone specs, paths, task names and CSV column names

NAME_WHY = "dataset names are stored in the reports and job file names, which must not hold patient data"
_SUITE_FIX = "correct that field of the suite file (limits: docs/benchmark.md, section Limits)"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not isinstance(value, int) or abs(value) < 10**20 else f"a {len(str(abs(value)))}-digit number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _integer(where: str, value: Any, low: int, high: int) -> int:
    """A JSON whole number (not true/false, not 1.5) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{where} is {_json_kind(value)}; it must be a whole number from {low} to {high}", _SUITE_FIX)
    if not low <= value <= high:
        raise InvalidInputError(f"{where} is {_json_kind(value)}; it must be a whole number from {low} to {high}", _SUITE_FIX)
    return value


def _text(where: str, value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{where} is {_json_kind(value)}; it must be a non-empty string", _SUITE_FIX)
    if len(value) > limit:
        raise InvalidInputError(f"{where} is {len(value)} characters long; at most {limit}", _SUITE_FIX)
    return value


def _shots(where: str, value: Any) -> None:
    """A list of shots (or the command line's "1,2,4" form); each a whole number from 1 to MAX_SHOTS."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(p.isdecimal() for p in parts):
            raise InvalidInputError(f"{where} is {value[:40]!r}; it must be a list of whole numbers such as [1, 4, 16]",
                                    _SUITE_FIX)
        value = [int(p) if len(p) <= 12 else 10**12 for p in parts]
    if not isinstance(value, list):
        raise InvalidInputError(f"{where} is {_json_kind(value)}; it must be a list of whole numbers such as [1, 4, 16]",
                                _SUITE_FIX)
    if not value:
        raise InvalidInputError(f"{where} is empty; list at least one number of shots, such as [1, 4, 16]", _SUITE_FIX)
    if len(value) > MAX_SHOT_VALUES:
        raise InvalidInputError(f"{where} lists {len(value)} values; at most {MAX_SHOT_VALUES}", _SUITE_FIX)
    for i, shot in enumerate(value):
        _integer(f"{where}[{i}]", shot, 1, MAX_SHOTS)


def _dataset(where: str, doc: Any) -> None:
    """Types and bounds of one dataset entry (the protocol checks which keys it has)."""
    if not isinstance(doc, dict):
        raise InvalidInputError(f"{where} is {_json_kind(doc)}; it must be an object", _SUITE_FIX)
    if "name" in doc:
        name = _text(f"{where}.name", doc["name"], MAX_NAME_CHARS)
        check_stored_text(f"{where}.name", name, why=NAME_WHY, fix="name the dataset after its task or source")
    for key in ("images", "test", "attributes", "sandbox_task", "shift", "path_column", "label_column", "group_column",
                "split_column"):
        if key in doc:
            _text(f"{where}.{key}", doc[key])
    for key in ("pool_per_class", "test_per_class"):
        if key in doc:
            _integer(f"{where}.{key}", doc[key], 1, MAX_PER_CLASS)
    if "data_seed" in doc:
        _integer(f"{where}.data_seed", doc["data_seed"], 0, MAX_DATA_SEED)


def check_suite_document(doc: Any, file_name: str) -> None:
    """Refuse a suite whose fields have the wrong type or ask for more than the limits, before anything runs.

    Every message starts with ``file_name`` and the field (``suite.json: shots[0]``);
    raises :class:`InvalidInputError` (exit 3).
    """
    if not isinstance(doc, dict):
        raise InvalidInputError(f"{file_name} is {_json_kind(doc)}; a suite file is a JSON object with a 'datasets' list",
                                "see `biomedvr benchmark --help` for the suite format")
    datasets = doc.get("datasets")
    if isinstance(datasets, list):
        if len(datasets) > MAX_DATASETS:
            raise InvalidInputError(f"{file_name}: datasets lists {len(datasets)} entries; at most {MAX_DATASETS}",
                                    "split the suite into several files with their own --out")
        for i, entry in enumerate(datasets):
            _dataset(f"{file_name}: datasets[{i}]", entry)
    if "backbone" in doc:
        _text(f"{file_name}: backbone", doc["backbone"])
    methods = doc.get("methods")
    if isinstance(methods, list):
        if not methods:
            raise InvalidInputError(f"{file_name}: methods is an empty list", "name at least one method, or remove "
                                    "the field for the default (all)")
        if len(methods) > MAX_METHOD_NAMES:
            raise InvalidInputError(f"{file_name}: methods lists {len(methods)} names; at most {MAX_METHOD_NAMES}", _SUITE_FIX)
        for i, method in enumerate(methods):
            _text(f"{file_name}: methods[{i}]", method, MAX_NAME_CHARS)
    if "shots" in doc:
        _shots(f"{file_name}: shots", doc["shots"])
    if "seeds" in doc:
        _integer(f"{file_name}: seeds", doc["seeds"], 1, MAX_SEEDS)
    if "epochs" in doc:
        _integer(f"{file_name}: epochs", doc["epochs"], 1, MAX_EPOCHS)
    if "val_shots" in doc:
        _integer(f"{file_name}: val_shots", doc["val_shots"], 0, MAX_SHOTS)
    if "epoch_scale" in doc:
        scale = doc["epoch_scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= MAX_EPOCH_SCALE:
            raise InvalidInputError(f"{file_name}: epoch_scale is {_json_kind(scale)}; it must be a number above 0 "
                                    f"and at most {MAX_EPOCH_SCALE:g}", _SUITE_FIX)


def _option_range(option: str, value: int | float | None, low: float, high: float, example: str) -> None:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value) or not low <= value <= high:
        raise UsageError(f"{option} is {value}; it must be from {low:g} to {high:g}", f"pass e.g. {option} {example}")


def check_options(*, shots: list[int] | None, seeds: int | None, epochs: int | None, epoch_scale: float | None,
                  batch_size: int | None, val_shots: int | None) -> None:
    """Bounds on the command line's sizes (exit 2, naming the option); None means not given."""
    if shots is not None:
        if len(shots) > MAX_SHOT_VALUES:
            raise UsageError(f"--shots lists {len(shots)} values; at most {MAX_SHOT_VALUES}", "pass e.g. --shots 1,2,4,8,16")
        for shot in shots:
            _option_range("--shots", shot, 1, MAX_SHOTS, "1,2,4,8,16")
    _option_range("--seeds", seeds, 1, MAX_SEEDS, "3")
    _option_range("--epochs", epochs, 1, MAX_EPOCHS, "2")
    if epoch_scale is not None and (not math.isfinite(epoch_scale) or not 0 < epoch_scale <= MAX_EPOCH_SCALE):
        raise UsageError(f"--epoch-scale is {epoch_scale}; it must be a number above 0 and at most {MAX_EPOCH_SCALE:g}",
                         "pass e.g. --epoch-scale 0.2")
    _option_range("--batch-size", batch_size, 1, MAX_BATCH_SIZE, "64")
    _option_range("--val-shots", val_shots, 0, MAX_SHOTS, "4")


def check_dataset_name(name: str, where: str) -> None:
    """A dataset name becomes a report field and part of job file names: bounded, and free of identifiers."""
    if len(name) > MAX_NAME_CHARS:
        raise UsageError(f"{where} is {len(name)} characters long; at most {MAX_NAME_CHARS}", "pass a shorter --name")
    check_stored_text(where, name, why=NAME_WHY, fix="pass --name with the dataset's task or source, e.g. --name busi")


def check_job_count(datasets: int, shot_free: int, trained: int, shots: int, seeds: int) -> None:
    """The sweep's job count (datasets x (zero-shot methods + trained methods x shots x seeds)) within MAX_JOBS."""
    jobs = datasets * (shot_free + trained * shots * seeds)
    if jobs > MAX_JOBS:
        raise UsageError(
            f"the sweep has {jobs} jobs ({datasets} datasets x ({shot_free} zero-shot + {trained} trained methods x "
            f"{shots} shots x {seeds} seeds)); at most {MAX_JOBS}",
            "run fewer datasets, methods, shots or seeds at a time (each with its own --out)",
        )


def check_sandbox_size(name: str, classes: int, pool_per_class: int, test_per_class: int, image_size: int) -> None:
    """The memory one generated sandbox dataset needs (uint8 RGB), before a single image is drawn."""
    needed = classes * (pool_per_class + test_per_class) * image_size * image_size * 3
    if needed > MAX_SANDBOX_BYTES:
        raise InvalidInputError(
            f"{name}: pool_per_class {pool_per_class} + test_per_class {test_per_class} images for {classes} classes "
            f"of {image_size}x{image_size} px need {needed / 2**30:.1f} GiB of memory; at most "
            f"{MAX_SANDBOX_BYTES / 2**30:g} GiB",
            "lower pool_per_class or test_per_class in the suite",
        )

"""The benchmark protocol as data: datasets, jobs, shots, seeds and the suite file.

A job is one (dataset, method, shots, seed). The seed chooses the few-shot support
set (and the validation split drawn beside it) as well as the initialisation, so the
spread over seeds includes the luck of the draw. Methods that learn nothing from the
support set (zero-shot) run once per dataset, recorded as shots 0, seed 0.

Jobs are listed dataset -> method -> shots -> seed, so that under ``torchrun`` the
``i % world`` sharding spreads each method's jobs over the ranks.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from biomedvr_cli.attributes.textfile import read_user_json
from biomedvr_cli.benchmark.limits import check_suite_document
from biomedvr_cli.errors import InvalidInputError, UsageError

DEFAULT_SHOTS = (1, 2, 4, 8, 16)
DEFAULT_SEEDS = 3
ZERO_SHOT_SHOTS = 0
SUITE_KEYS = {"datasets", "backbone", "methods", "shots", "seeds", "epochs", "epoch_scale", "val_shots"}
SANDBOX_KEYS = {"name", "sandbox_task", "attributes", "shift", "pool_per_class", "test_per_class", "data_seed"}
IMAGES_KEYS = {"name", "images", "test", "attributes", "path_column", "label_column", "group_column", "split_column"}
DATASET_KEYS = SANDBOX_KEYS | IMAGES_KEYS


def slug(text: str) -> str:
    """A file-name-safe form of a name (lower case, ``-`` between words)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a benchmark: an image folder/CSV (with a test split or a test source), or a sandbox task.

    Sandbox datasets are generated in memory: ``pool_per_class`` images per class to
    draw support and validation sets from, ``test_per_class`` test images per class,
    both from ``data_seed`` (fixed across benchmark seeds, so the test set never moves).
    """

    name: str
    images: Path | None = None
    test: Path | None = None
    attributes: Path | None = None
    sandbox_task: str | None = None
    shift: str = "none"
    pool_per_class: int = 40
    test_per_class: int = 100
    data_seed: int = 0
    path_column: str = "path"
    label_column: str = "label"
    group_column: str | None = None  # None: a 'group' or id-like column when there is one (data.records.CsvColumns)
    split_column: str = "split"

    @property
    def key(self) -> str:
        return slug(self.name)

    @property
    def is_sandbox(self) -> bool:
        return self.sandbox_task is not None

    def describe(self) -> dict[str, Any]:
        """Path-free description for reports."""
        if self.is_sandbox:
            assert self.sandbox_task is not None
            task = Path(self.sandbox_task).name if is_task_file(self.sandbox_task) else self.sandbox_task
            return {"name": self.name, "sandbox_task": task, "shift": self.shift,
                    "pool_per_class": self.pool_per_class, "test_per_class": self.test_per_class,
                    "data_seed": self.data_seed}
        return {"name": self.name, "images": self.images.name if self.images else None,
                "test": self.test.name if self.test else None,
                "attributes": self.attributes.name if self.attributes else None}


@dataclass(frozen=True)
class Job:
    """One unit of work and of storage."""

    dataset: str  # DatasetSpec.name
    method: str
    shots: int
    seed: int

    @property
    def key(self) -> str:
        return f"{slug(self.dataset)}__{self.method}__k{self.shots}__s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Suite:
    """What a ``--suite`` file holds; every field but ``datasets`` is optional (CLI options win)."""

    datasets: list[DatasetSpec]
    backbone: str | None = None
    methods: list[str] | None = None
    shots: list[int] | None = None
    seeds: int | None = None
    epochs: int | None = None
    epoch_scale: float | None = None
    val_shots: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_shots(text: str | list[int] | tuple[int, ...]) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4]; each at least 1, unique, kept in the given order."""
    values = text if isinstance(text, (list, tuple)) else [p for p in str(text).replace(" ", "").split(",") if p]
    try:
        shots = [int(v) for v in values]
    except (TypeError, ValueError):
        raise UsageError(f"cannot read --shots {text!r}", "pass a comma-separated list such as 1,2,4,8,16") from None
    if not shots or any(s < 1 for s in shots):
        raise UsageError(f"--shots must list numbers of at least 1, got {text!r}", "pass e.g. --shots 1,2,4,8,16")
    return list(dict.fromkeys(shots))


def seed_list(seeds: int) -> list[int]:
    """``--seeds N`` means seeds 0 .. N-1."""
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}", "pass --seeds 3 (support sets drawn with seeds 0, 1, 2)")
    return list(range(seeds))


def make_jobs(datasets: list[DatasetSpec], methods: list[str], shots: list[int], seeds: list[int],
              shot_free: set[str]) -> list[Job]:
    """Every job of the sweep in a fixed order; ``shot_free`` methods run once per dataset."""
    jobs: list[Job] = []
    for dataset in datasets:
        for method in methods:
            if method in shot_free:
                jobs.append(Job(dataset.name, method, ZERO_SHOT_SHOTS, 0))
                continue
            for k in shots:
                for seed in seeds:
                    jobs.append(Job(dataset.name, method, k, seed))
    return jobs


def _path(base: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{where} must be a non-empty path string", "fix the suite file")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def is_task_file(sandbox_task: str) -> bool:
    """Whether a ``sandbox_task`` value names a task file rather than a built-in task (``load_task``'s rule)."""
    return Path(sandbox_task).suffix == ".json"


def _sandbox_task(base: Path, value: Any, where: str) -> str:
    """A built-in task name as is; a task file path resolved against the suite's folder, like ``images``."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{where} must be a built-in task name or a task file path", "fix the suite file")
    return str(_path(base, value, where)) if is_task_file(value) else value


def _dataset_from(doc: Any, base: Path, index: int) -> DatasetSpec:
    where = f"suite dataset #{index + 1}"
    if not isinstance(doc, dict):
        raise InvalidInputError(f"{where} must be a JSON object", "see `biomedvr benchmark --help` for the suite format")
    unknown = sorted(set(doc) - DATASET_KEYS)
    if unknown:
        raise InvalidInputError(f"{where}: unknown key(s) {', '.join(unknown)}", f"allowed keys: {', '.join(sorted(DATASET_KEYS))}")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"{where} needs a 'name'", "give every dataset a short unique name")
    if ("sandbox_task" in doc) == ("images" in doc):
        raise InvalidInputError(f"{where} ({name}) needs exactly one of 'images' and 'sandbox_task'",
                                "point 'images' at a folder/CSV, or name a built-in sandbox task")
    kind, allowed = ("sandbox_task", SANDBOX_KEYS) if "sandbox_task" in doc else ("images", IMAGES_KEYS)
    misplaced = sorted(set(doc) - allowed)
    if misplaced:  # e.g. a test split on a sandbox task: silently unused, the run would not be the one described
        raise InvalidInputError(f"{where} ({name}): {', '.join(misplaced)} do(es) not apply to a dataset with '{kind}'",
                                f"remove it; keys for such a dataset: {', '.join(sorted(allowed))}")
    kwargs: dict[str, Any] = {"name": name.strip()}
    if "sandbox_task" in doc:
        kwargs["sandbox_task"] = _sandbox_task(base, doc["sandbox_task"], f"{where} ({name}) sandbox_task")
        kwargs["shift"] = str(doc.get("shift", "none"))
        for key in ("pool_per_class", "test_per_class", "data_seed"):
            if key in doc:
                if not isinstance(doc[key], int) or doc[key] < (0 if key == "data_seed" else 1):
                    raise InvalidInputError(f"{where} ({name}): {key} must be a positive integer", "fix the suite file")
                kwargs[key] = doc[key]
        if "attributes" in doc:
            kwargs["attributes"] = _path(base, doc["attributes"], f"{where} attributes")
    else:
        kwargs["images"] = _path(base, doc["images"], f"{where} images")
        for key in ("test", "attributes"):
            if key in doc:
                kwargs[key] = _path(base, doc[key], f"{where} {key}")
        for key in ("path_column", "label_column", "group_column", "split_column"):
            if key in doc:
                kwargs[key] = str(doc[key])
    return DatasetSpec(**kwargs)


def _suite_backbone(base: Path, text: str) -> str:
    """A backbone that names a local folder or weights file, relative to the suite's folder like the datasets."""
    from biomedvr_cli.backbones.specs import parse_backbone

    try:
        spec = parse_backbone(text)
    except UsageError:
        return text  # refused with its own message when the run loads it
    if spec.local_path is None or spec.local_path.is_absolute():
        return text
    where = base / spec.local_path
    return f"local-dir:{where}" if spec.kind == "local-dir" else f"{spec.model}:{where}"


def load_suite(path: Path) -> Suite:
    """Read a suite file (JSON). Relative paths (images, test, attributes, a ``sandbox_task``
    ending in ``.json`` and a backbone's folder or weights file) are relative to the suite file's
    folder, wherever the command runs.

    Format::

        {"datasets": [
           {"name": "blood", "sandbox_task": "blood-smear", "shift": "default"},
           {"name": "busi", "images": "busi/train", "test": "busi/test", "attributes": "busi.json"}],
         "backbone": "sandbox", "methods": ["all"], "shots": [1, 4, 16], "seeds": 3, "epoch_scale": 0.2}
    """
    path = Path(path)
    doc = read_user_json(path, missing_hint="check the --suite path", fix_hint="fix the suite file")
    check_suite_document(doc, path.name)  # types and size limits of every field, before anything is allocated
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), list) or not doc["datasets"]:
        raise InvalidInputError(f"{path.name} must be an object with a non-empty 'datasets' list",
                                "see `biomedvr benchmark --help` for the suite format")
    unknown = sorted(set(doc) - SUITE_KEYS)
    if unknown:
        raise InvalidInputError(f"{path.name}: unknown key(s) {', '.join(unknown)}", f"allowed keys: {', '.join(sorted(SUITE_KEYS))}")
    base = path.resolve().parent
    datasets = [_dataset_from(d, base, i) for i, d in enumerate(doc["datasets"])]
    check_unique_names(datasets)
    methods = doc.get("methods")
    if methods is not None and (not isinstance(methods, list) or not all(isinstance(m, str) for m in methods)):
        raise InvalidInputError(f"{path.name}: 'methods' must be a list of names", "e.g. [\"biomedvr\", \"baselines\"]")
    shots = parse_shots(doc["shots"]) if "shots" in doc else None
    seeds = doc.get("seeds")
    if seeds is not None and (not isinstance(seeds, int) or seeds < 1):
        raise InvalidInputError(f"{path.name}: 'seeds' must be a positive integer", "e.g. \"seeds\": 3")
    if "epochs" in doc and "epoch_scale" in doc:
        raise InvalidInputError(f"{path.name}: 'epochs' and 'epoch_scale' both set",
                                "keep one: epochs for every method, or epoch_scale for each recipe's own")
    backbone = _suite_backbone(base, doc["backbone"]) if "backbone" in doc else None
    return Suite(datasets=datasets, backbone=backbone, methods=methods, shots=shots, seeds=seeds,
                 epochs=doc.get("epochs"), epoch_scale=doc.get("epoch_scale"), val_shots=doc.get("val_shots"))


def check_unique_names(datasets: list[DatasetSpec]) -> None:
    """Dataset names must stay distinct once turned into file names."""
    seen: dict[str, str] = {}
    for d in datasets:
        if d.key in seen:
            raise InvalidInputError(f"datasets {seen[d.key]!r} and {d.name!r} have the same file-safe name {d.key!r}",
                                    "give each dataset a distinct name")
        seen[d.key] = d.name

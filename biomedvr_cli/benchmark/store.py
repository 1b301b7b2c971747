"""The resumable result store: one small JSON file per finished job, written atomically.

``OUT/jobs/<dataset>__<method>__k<shots>__s<seed>.json`` holds the job, its metrics,
its fit time and ``settings_hash`` (a hash of everything that changes its result:
dataset, backbone weights, method settings, validation size). A rerun skips jobs whose
file exists with the same hash; a file with another hash means the settings changed,
which is refused unless ``--force`` (then those jobs are redone). A crash, Ctrl-C or
SIGTERM loses at most the job in flight; no partial file is ever left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any

from biomedvr_cli.atomic import write_text_atomic
from biomedvr_cli.benchmark.protocol import Job
from biomedvr_cli.errors import UsageError

STORE_VERSION = 1


def strict_json(document: Any, *, indent: int) -> str:
    """JSON text with every non-finite number as null (an undefined metric, such as AUROC with one
    class in the test split, is missing, and a bare NaN is not JSON)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(document), indent=indent, sort_keys=False, allow_nan=False) + "\n"


def settings_hash(parts: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able description."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:20]


class JobStore:
    """Per-job result files under ``out/jobs``."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.jobs_dir = self.out / "jobs"

    def path(self, job: Job) -> Path:
        return self.jobs_dir / f"{job.key}.json"

    def load(self, job: Job) -> dict[str, Any] | None:
        """The stored result of ``job``, or None: a missing file, or a damaged one (with a warning), is not done.

        Damaged means unreadable, not this store's JSON, or not this job's result with an accuracy
        between 0 and 1 (a hand-edited or truncated file): the job is run again and its file replaced.
        """
        path = self.path(job)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if not _is_result_of(data, job):
            warnings.warn(f"{self.out.name}/jobs/{job.key}.json is damaged (not a readable result of this job); "
                          "the job is run again", stacklevel=2)
            return None
        return data

    def done(self, job: Job, expected_hash: str, *, force: bool) -> dict[str, Any] | None:
        """The stored result when it was made with the same settings; None when the job must run."""
        data = self.load(job)
        if data is None:
            return None
        if data.get("settings_hash") == expected_hash:
            return data
        if force:
            return None
        raise UsageError(
            f"{self.out.name}/jobs/{job.key}.json was made with different settings (epochs, data, backbone or method)",
            "use a new --out folder, or pass --force to redo the jobs whose settings changed",
        )

    def save(self, job: Job, result: dict[str, Any]) -> Path:
        """Write one job's result atomically (replacing an outdated one)."""
        path = self.path(job)
        payload = {"store_version": STORE_VERSION, **result}
        write_text_atomic(path, strict_json(payload, indent=1), force=True)
        return path

    def drop_if_empty(self) -> None:
        """Remove ``jobs/`` when no job was stored in it (a run stopped before its first job finished)."""
        with contextlib.suppress(OSError):  # missing, or holding results: kept
            self.jobs_dir.rmdir()


def _number(value: Any, *, optional: bool) -> bool:
    if value is None:
        return optional
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _count(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 0


# Fields the reports read from a stored result, beyond its job and hash: (name, check).
_REPORTED = (("fit_seconds", lambda v: _number(v, optional=False) and v >= 0),
             ("selected_epoch", lambda v: v is None or _count(v)),
             ("val_accuracy", lambda v: _number(v, optional=True)),
             ("start_accuracy", lambda v: _number(v, optional=True)),
             ("train_images", _count), ("val_images", _count), ("test_images", _count))


def _is_result_of(data: Any, job: Job) -> bool:
    """Whether ``data`` is a stored result of ``job`` that a report can use: every field a report
    reads has its type (a metric may be null: undefined, such as AUROC with one test class)."""
    if not isinstance(data, dict) or data.get("store_version") != STORE_VERSION:
        return False
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not all(_number(v, optional=True) for v in metrics.values()):
        return False
    accuracy = metrics.get("accuracy")
    if not _number(accuracy, optional=False) or not 0 <= accuracy <= 1:
        return False
    if not all(check(data.get(name)) for name, check in _REPORTED):
        return False
    same = (data.get("dataset"), data.get("method"), data.get("shots"), data.get("seed"))
    return same == (job.dataset, job.method, job.shots, job.seed) and isinstance(data.get("settings_hash"), str)

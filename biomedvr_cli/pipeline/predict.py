"""Batch prediction over files: decode in chunks, score, keep going past unreadable files."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biomedvr_cli.data import DecodeOptions, decode_to_tensors
from biomedvr_cli.errors import UsageError
from biomedvr_cli.pipeline.arguments import as_path
from biomedvr_cli.pipeline.predictor import Explanation, Predictor
from biomedvr_cli.pipeline.trust import check_assurance, check_level, require_calibration, sets_level, trust_fields
from biomedvr_cli.pipeline.state import float32_default


@dataclass
class Prediction:
    """One input's result: top-k (class, probability), or the error that stopped it."""

    path: Path
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    explanation: Explanation | None = None
    trust: dict[str, Any] = field(default_factory=dict)  # prediction_set, outlier, outlier_score (docs/trust.md)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": str(self.path)}
        if self.error is not None:
            data["error"] = self.error
        else:
            data["prediction"] = self.top[0][0]
            data["top"] = [{"class": c, "probability": round(p, 6)} for c, p in self.top]
            data.update(self.trust)
        if self.explanation is not None:
            data["explain"] = self.explanation.to_dict()
        return data


def _path_list(paths: Any) -> list[Path]:
    """One path alone or a list of them, as Paths; anything else is a UsageError with the fix."""
    fix = "pass a list of image paths, e.g. [\"scan.png\"] (Predictor.classify takes images and arrays)"
    if isinstance(paths, (str, os.PathLike)) and not isinstance(paths, bytes):
        paths = [paths]
    if not isinstance(paths, (list, tuple)):
        raise UsageError(f"paths must be a list of image paths, got {type(paths).__name__}", fix)
    return [as_path(p, f"paths[{i}]", fix) for i, p in enumerate(paths)]


def check_predict_options(*, top_k: int, batch_size: int) -> None:
    """Refuse option values that cannot work (UsageError, exit 2), before any model is loaded."""
    for name, value in (("--top-k", top_k), ("--batch-size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise UsageError(f"{name} must be a whole number, got {type(value).__name__}", f"pass {name} 1 or more")
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}", "pass --top-k 1 or more (default 3)")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}", "pass --batch-size 1 or more (default 64)")


@float32_default()
def predict_files(
    predictor: Predictor,
    paths: Sequence[Path],
    *,
    top_k: int = 3,
    batch_size: int = 64,
    decode: DecodeOptions = DecodeOptions(),
    explain: bool = False,
    progress: Callable[[int, int], None] | None = None,
    coverage: float | None = None,
    assurance: float | None = None,
    made: list[Prediction] | None = None,
) -> list[Prediction]:
    """Predict every path in order; files that cannot be read carry their error.

    ``paths`` is a list of paths (str or Path) or one path alone, never iterated character by character.
    ``coverage`` adds each image's prediction set at that level (with ``assurance``: at the level where
    this adapter's own coverage reaches ``coverage`` with that probability, docs/trust.md);
    calibrated adapters also flag outliers.
    ``made``, when given, is the list the predictions are appended to as each batch is scored (and
    returned), so a caller still holds the finished ones when the run is interrupted.
    """
    if not isinstance(predictor, Predictor):
        raise UsageError(f"predictor must be a loaded Predictor, got {type(predictor).__name__}",
                         "load one with biomedvr.load(\"adapter.safetensors\") or load_predictor(path)")
    paths = _path_list(paths)
    if made is not None and not isinstance(made, list):
        raise UsageError(f"made must be a list, got {type(made).__name__}", "pass an empty list, or leave made out")
    check_predict_options(top_k=top_k, batch_size=batch_size)
    assurance = check_assurance(assurance, coverage)
    level = None
    if coverage is not None:  # before any image is decoded: a bad level (exit 2), an adapter without calibration (exit 4)
        coverage = check_level(coverage)
        require_calibration(predictor, coverage=coverage)
        level, _, _ = sets_level(predictor, coverage, assurance)
    results: list[Prediction] = made if made is not None else []
    classes = predictor.classes
    k = max(1, min(top_k, len(classes)))
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        batch = decode_to_tensors(chunk, predictor.image_size, decode)
        failures = {str(p): reason for p, reason in batch.failures}
        assessed = predictor.assess(batch.images, level) if batch.kept else None  # sets (with coverage), outlier flags
        row_of = {i: r for r, i in enumerate(batch.kept)}
        for i, path in enumerate(chunk):
            if i not in row_of:
                results.append(Prediction(path, error=failures.get(str(path), "could not be read")))
                continue
            values, indices = assessed.probs[row_of[i]].topk(k)
            pred = Prediction(path, top=[(classes[int(j)], float(v)) for v, j in zip(values, indices)],
                              trust=trust_fields(assessed, row_of[i], classes))
            if explain:
                pred.explanation = predictor.explain(batch.images[row_of[i]], int(indices[0]))
            results.append(pred)
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))
    return results

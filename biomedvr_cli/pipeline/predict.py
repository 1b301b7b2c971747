"""Batch prediction over files: decode in chunks, score, keep going past unreadable files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biomedvr_cli.data import DecodeOptions, decode_to_tensors
from biomedvr_cli.errors import UsageError
from biomedvr_cli.pipeline.predictor import Explanation, Predictor


@dataclass
class Prediction:
    """One input's result: top-k (class, probability), or the error that stopped it."""

    path: Path
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    explanation: Explanation | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": str(self.path)}
        if self.error is not None:
            data["error"] = self.error
        else:
            data["prediction"] = self.top[0][0]
            data["top"] = [{"class": c, "probability": round(p, 6)} for c, p in self.top]
        if self.explanation is not None:
            data["explain"] = self.explanation.to_dict()
        return data


def check_predict_options(*, top_k: int, batch_size: int) -> None:
    """Refuse option values that cannot work (UsageError, exit 2), before any model is loaded."""
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}", "pass --top-k 1 or more (default 3)")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}", "pass --batch-size 1 or more (default 64)")


def predict_files(
    predictor: Predictor,
    paths: Sequence[Path],
    *,
    top_k: int = 3,
    batch_size: int = 64,
    decode: DecodeOptions = DecodeOptions(),
    explain: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Prediction]:
    """Predict every path in order; files that cannot be read carry their error."""
    check_predict_options(top_k=top_k, batch_size=batch_size)
    results: list[Prediction] = []
    classes = predictor.classes
    k = max(1, min(top_k, len(classes)))
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        batch = decode_to_tensors(chunk, predictor.image_size, decode)
        failures = {str(p): reason for p, reason in batch.failures}
        probs = predictor.probabilities(batch.images) if batch.kept else None
        row_of = {i: r for r, i in enumerate(batch.kept)}
        for i, path in enumerate(chunk):
            if i not in row_of:
                results.append(Prediction(path, error=failures.get(str(path), "could not be read")))
                continue
            row = probs[row_of[i]]
            values, indices = row.topk(k)
            pred = Prediction(path, top=[(classes[int(j)], float(v)) for v, j in zip(values, indices)])
            if explain:
                pred.explanation = predictor.explain(batch.images[row_of[i]], int(indices[0]))
            results.append(pred)
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))
    return results

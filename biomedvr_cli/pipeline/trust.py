"""Prediction sets and outlier flags in ``predict``, ``eval`` and the Python API (math: method/trust.py).

Choices (docs/trust.md): a level the calibration cannot support gives every class in every set
and a notice, not an error, so a batch never stops halfway; an adapter without calibration
(fitted before it existed) is an AdapterError, exit 4, whose fix is to refit.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Protocol

import torch

from biomedvr_cli.data import CsvColumns, DecodeOptions, collect_inputs, decode_to_tensors
from biomedvr_cli.errors import AdapterError, InvalidInputError, UsageError
from biomedvr_cli.method import conformal, outliers
from biomedvr_cli.method.trust import Assessment, Calibration, refit_hint


class Predictor(Protocol):
    """What this module needs of pipeline.predictor.Predictor (which imports this module)."""

    calibration: Calibration
    image_size: int

    def assess(self, images: torch.Tensor, level: float | None = None, batch_size: int = 256) -> Assessment: ...


def _fraction(value: object, what: str, hint: str) -> float:
    """``value`` as a float strictly between 0 and 1 (UsageError, exit 2, otherwise)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and 0 < value < 1):
        raise UsageError(f"the {what} must be a number between 0 and 1 (exclusive), got {value!r}", hint)
    return float(value)


def check_level(level: object) -> float:
    """A coverage level strictly between 0 and 1 (UsageError, exit 2, otherwise)."""
    return _fraction(level, "coverage level",
                     "pass a level between 0 and 1, e.g. 0.9 (--coverage 0.9) for sets that hold the true class 9 times in 10")


def check_assurance(assurance: object, coverage: float | None) -> float | None:
    """An assurance strictly between 0 and 1, given only with a coverage level (UsageError, exit 2, otherwise)."""
    if assurance is None:
        return None
    if coverage is None:
        raise UsageError("--assurance needs --coverage", "pass --coverage 0.9 --assurance 0.9")
    return _fraction(assurance, "assurance", "pass --assurance 0.9 for sets whose coverage reaches the level for 9 adapters in 10")


def sets_level(predictor: Predictor, coverage: float | None,
               assurance: float | None) -> tuple[float | None, list[str], str | None]:
    """The level the sets are built at, warnings about it, and a note that names it.

    With ``assurance``, the level at which this adapter's own coverage reaches ``coverage`` with
    that probability over the draw of its labelled images (conformal.assured_level), and a note
    saying so (information, not a warning); when its calibration images are too few for that, a
    level that gives every class in every set, and a warning.
    """
    part = predictor.calibration.conformal
    if coverage is None or assurance is None or part is None or not conformal.level_supported(part.images, coverage):
        return coverage, [], None
    level = conformal.assured_level(part.images, coverage, assurance)
    if level is None:
        return (part.images + 0.5) / (part.images + 1), [
            f"coverage {coverage:g} with assurance {assurance:g} needs more than the {part.images} labelled images this "
            "adapter was calibrated on: every set holds every class (fit with more labelled images, or lower "
            "--assurance)"], None
    return level, [], (f"prediction sets built at level {conformal.level_text(level, part.images)}: at that level this adapter's own coverage is at "
                       f"least {coverage:g} with probability {assurance:g} over the draw of its {part.images} labelled "
                       "images (docs/trust.md)")


def require_calibration(predictor: Predictor, *, coverage: float | None = None, outliers_wanted: bool = False) -> list[str]:
    """Refuse an adapter that lacks what was asked for (exit 4); return notices to show (full sets, caveats)."""
    calibration = predictor.calibration
    if coverage is not None and calibration.conformal is None:
        raise AdapterError("this adapter has no calibration for prediction sets (--coverage)", refit_hint(calibration))
    if outliers_wanted and calibration.outliers is None:
        raise AdapterError("this adapter has no outlier calibration (--outliers)", refit_hint(calibration))
    part = calibration.conformal
    if coverage is None or part is None:
        return []
    notices = []
    if not conformal.level_supported(part.images, coverage):
        notices.append(f"coverage {coverage:g} needs at least {conformal.images_needed(coverage)} calibration images and "
                       f"this adapter has {part.images}: every set holds every class (the most it supports is "
                       f"{part.images / (part.images + 1):.3f}; fit with more labelled images for smaller sets)")
    if part.caveat:
        notices.append(f"prediction sets: {part.caveat}")
    return notices


def class_sets(assessed: Assessment, classes: list[str]) -> list[list[str]]:
    """Each image's prediction set as class names, most probable first."""
    if assessed.sets is None:
        return []
    order = assessed.probs.argsort(dim=1, descending=True).tolist()
    return [[classes[j] for j in row if bool(members[j])] for row, members in zip(order, assessed.sets)]


def trust_fields(assessed: Assessment, row: int, classes: list[str]) -> dict[str, Any]:
    """One prediction's set (most probable class first) and outlier flag, as JSON fields."""
    out: dict[str, Any] = {}
    if assessed.sets is not None:
        order = assessed.probs[row].argsort(descending=True).tolist()
        out["prediction_set"] = [classes[j] for j in order if bool(assessed.sets[row, j])]
    if assessed.outliers is not None:
        out["outlier"] = bool(assessed.outliers[row])
        # Six significant digits: the score is computed in float32, whose last digits move with
        # the batch an image is scored in; the flag itself uses the unrounded score.
        out["outlier_score"] = float(f"{float(assessed.outlier_scores[row]):.6g}")
    return out


def outlier_files(source: Path | None, columns: CsvColumns = CsvColumns()) -> list[Path] | None:
    """The files of ``eval --outliers`` (a folder, a file or a CSV manifest), listed before any image is scored."""
    return None if source is None else collect_inputs([source], columns=columns)


def assess_outliers(predictor: Predictor, files: list[Path], *, decode: DecodeOptions = DecodeOptions(),
                    warnings: list[str] | None = None) -> Assessment:
    """The ``eval --outliers`` images scored (unreadable ones left out with a warning)."""
    batch = decode_to_tensors(files, predictor.image_size, decode)
    if batch.failures and warnings is not None:
        warnings.append(f"{len(batch.failures)} of the --outliers images could not be read and were left out")
    if not batch.kept:
        raise InvalidInputError("no readable images in --outliers", "pass a folder or CSV of images of another kind")
    return predictor.assess(batch.images)


def add_trust_metrics(metrics: dict[str, Any], assessed: Assessment, labels: list[int], classes: list[str], *,
                      coverage: float | None, others: Assessment | None) -> None:
    """Coverage and set size (overall and per class), and the outlier AUROC and flag rates, into ``metrics``."""
    if coverage is not None and assessed.sets is not None:
        sets = conformal.set_metrics(assessed.sets, labels, classes)
        metrics.update(coverage_level=coverage, coverage=sets["coverage"], mean_set_size=sets["mean_set_size"])
        for row, extra in zip(metrics["per_class"], sets["per_class"]):
            row.update(coverage=extra["coverage"], mean_set_size=extra["mean_set_size"])
    if others is not None and assessed.outliers is not None and others.outliers is not None:
        metrics.update(outlier_auroc=outliers.auroc(assessed.outlier_scores, others.outlier_scores),
                       outlier_images=int(others.outliers.numel()),
                       outliers_flagged=float(others.outliers.double().mean()),
                       inliers_flagged=float(assessed.outliers.double().mean()))

"""Calibrating prediction sets and the outlier flag at fit time, and applying them to new images.

At the end of a fit, every labelled image gets

- a conformal score from a model that did not see it (``method.conformal``): when the feature
  head reads the image feature (some weight on a finite penalty), K fold heads are refitted
  without each fold (the folds of its own cross-validation, same penalties and weights, through
  the kept views) and kept, so that
  a new image is scored by the same K models (CV+). Otherwise the model is the sentence scorer,
  fitted to none of these images, and its own scores are the calibration (split conformal).
- an outlier score from class means and a covariance fitted without its fold (``method.outliers``).

Which images: every labelled one. When the kept VR state is the untrained start (epoch 0,
nearly every fit), the views were fitted to none of them and the guarantee holds as stated.
When a trained VR epoch was kept, its patterns were fitted to these images too (the VR stage is
retrained on every label), so their scores are somewhat too good and coverage may fall short of
the level; the calibration then carries a ``caveat`` that ``predict`` and ``eval`` show.

Everything stored is a tensor of scores, fold heads or class means (no paths, no identifiers);
the adapter config records method and counts (``Calibration.record``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from biomedvr_cli.errors import AdapterError, BackboneUnavailableError
from biomedvr_cli.method import conformal, outliers
from biomedvr_cli.method.feature_head import solve_mixture, stratified_folds
from biomedvr_cli.method.head import BioMedVRHead
from biomedvr_cli.method.training import Encode, LabelledImages, TrainResult, head_outputs

# Adapter tensors that belong to the calibration, not to the head.
CALIBRATION_PREFIXES = ("conformal_", "outlier_")
ALL_IMAGES = "all labelled images"
ONE_IMAGE_NOTE = ("no outlier flag: with one labelled image a class no threshold can be calibrated (leaving an "
                  "image out leaves its class without images); fit with --val-shots 1 or more for one")
FITTED_VIEWS_CAVEAT = ("the kept VR patterns were trained on the calibration images too, so coverage may fall "
                       "short of the level")


@dataclass
class ConformalCalibration:
    """Calibration scores, the fold model of each, and the K fold heads (None: one model, split conformal)."""

    scores: torch.Tensor  # [n]
    folds: torch.Tensor  # [n], long
    weight: torch.Tensor | None = None  # [K, C, D], logit units
    bias: torch.Tensor | None = None  # [K, C]
    scale: torch.Tensor | None = None  # [K]
    caveat: str = ""  # why the guarantee may not hold for this adapter (shown with every set)

    @property
    def images(self) -> int:
        return int(self.scores.numel())

    @property
    def method(self) -> str:
        return "split" if self.weight is None else "cv+"

    def tensors(self) -> dict[str, torch.Tensor]:
        """What the adapter stores."""
        out = {"conformal_scores": self.scores.float(), "conformal_folds": self.folds.long()}
        if self.weight is not None:
            out.update(conformal_fold_weight=self.weight.float(), conformal_fold_bias=self.bias.float(),
                       conformal_fold_scale=self.scale.float())
        return out

    def record(self) -> dict[str, Any]:
        """The config entry: method, score, counts (no data)."""
        out = {"method": self.method, "score": conformal.SCORE, "images": self.images,
               "folds": 1 if self.weight is None else int(self.weight.shape[0]), "calibrated_on": ALL_IMAGES,
               "max_level": round(self.images / (self.images + 1), 6)}
        return {**out, "caveat": self.caveat} if self.caveat else out

    def probabilities(self, fused: torch.Tensor, sentences: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """New images' probabilities [N, K, C] under the fold models (K = 1: the adapter itself)."""
        if self.weight is None:
            return torch.softmax(fused.float(), dim=1)[:, None, :]
        return conformal.fold_probabilities(sentences, features, self.weight, self.bias, self.scale)


@dataclass
class OutlierCalibration:
    """What scores a new image's outlyingness, the calibration scores, and the threshold they give.

    ``precision`` set: the Mahalanobis score (``means`` are the class means). ``precision`` None:
    an adapter written with the earlier score (before 2026-12-06), scored by cosine to ``means``
    (its normalised class means).
    """

    means: torch.Tensor  # [C, D]
    scores: torch.Tensor  # [m]
    precision: torch.Tensor | None = None  # [D, D]
    rate: float = outliers.DEFAULT_RATE

    @property
    def threshold(self) -> float:
        return outliers.conformal_threshold(self.scores, self.rate)

    @property
    def score_name(self) -> str:
        return outliers.COSINE if self.precision is None else outliers.MAHALANOBIS

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Outlier scores [N] of new images' features."""
        if self.precision is None:
            return outliers.cosine_scores(features, self.means)
        return outliers.mahalanobis_scores(features, self.means, self.precision)

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.precision is None:
            return {"outlier_prototypes": self.means.float(), "outlier_scores": self.scores.float()}
        return {"outlier_means": self.means.float(), "outlier_precision": self.precision.float(),
                "outlier_scores": self.scores.float()}

    def record(self) -> dict[str, Any]:
        return {"score": self.score_name, "images": int(self.scores.numel()), "rate": self.rate,
                "threshold": round(self.threshold, 6)}


@dataclass
class Calibration:
    """What an adapter knows about trusting its answers (either part may be missing)."""

    conformal: ConformalCalibration | None = None
    outliers: OutlierCalibration | None = None
    note: str = ""  # why a part is missing (no set calibration, or no outlier flag)

    def tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for part in (self.conformal, self.outliers):
            if part is not None:
                out.update(part.tensors())
        return out

    def record(self) -> dict[str, Any]:
        """The adapter config's ``calibration`` section."""
        out: dict[str, Any] = {}
        if self.conformal is not None:
            out["conformal"] = self.conformal.record()
        if self.outliers is not None:
            out["outliers"] = self.outliers.record()
        if self.note:
            out["note"] = self.note
        return out


def _fold_heads(sentences, features, labels, num_classes, mixture, folds, seed, steps):
    """Out-of-fold probabilities [N, C] and the K heads (stacked) that made them (the fit's own folds and penalties)."""
    fold_of = stratified_folds(labels, folds, seed)
    probs = torch.zeros(labels.numel(), num_classes)
    weights, biases, scales = [], [], []
    for k in range(folds):
        held = fold_of == k
        weight, bias, scale = solve_mixture(sentences[~held], features[~held], labels[~held], num_classes, mixture,
                                            steps=steps)
        weights.append(weight), biases.append(bias), scales.append(scale)
        probs[held] = torch.softmax(scale * sentences[held] + features[held] @ weight.t() + bias, dim=1)
    return probs, fold_of, torch.stack(weights), torch.stack(biases), torch.tensor(scales, dtype=torch.float32)


def calibrate(head: BioMedVRHead, encode: Encode, labelled: LabelledImages, result: TrainResult, *, seed: int,
              device: torch.device | None = None) -> Calibration:
    """Scores of the labelled images from models that did not see them (see the module docstring).

    ``labelled`` are every labelled image of the fit, support then validation (the order the
    feature head's cross-validation used, so the folds are its folds).
    """
    images, labels = labelled.images.cpu(), labelled.labels.cpu().long()
    if labels.numel() == 0:
        return Calibration(note="no labelled images to calibrate on")
    fused, sentences, features = head_outputs(head, encode, images, device=device)
    caveat = "" if result.selected_epoch == 0 else FITTED_VIEWS_CAVEAT
    fit = result.feature_head
    if head.config.feature_head and fit is not None and fit.uses_features and fit.folds >= 2:
        probs, fold_of, weight, bias, scale = _fold_heads(sentences, features, labels, head.num_classes, fit.mixture,
                                                          fit.folds, seed, head.config.head_lbfgs_steps)
        part = ConformalCalibration(conformal.lac_scores(probs, labels), fold_of, weight, bias, scale, caveat)
    else:  # the sentence scorer (or a head fitted without cross-validation): one model for every image
        probs = torch.softmax(fused, dim=1)
        part = ConformalCalibration(conformal.lac_scores(probs, labels), torch.zeros_like(labels), caveat=caveat)
    if int(torch.bincount(labels).max()) < 2:  # every fold fit would lack the left-out image's class
        return Calibration(part, None, note=ONE_IMAGE_NOTE)
    means, precision = outliers.fit_gaussian(features, labels, head.num_classes)
    flag = OutlierCalibration(means, outliers.cross_fitted_scores(features, labels, head.num_classes,
                                                                  outlier_folds(labels, head.config.head_folds, seed)),
                              precision)
    return Calibration(part, flag)


def outlier_folds(labels: torch.Tensor, head_folds: int, seed: int) -> torch.Tensor:
    """The fold of each labelled image for its outlier score: the feature head's folds (2 to ``head_folds``).

    With at most two images a class (1 shot), k folds would leave one image a class in each fold
    fit: no spread around the means to estimate, so the fold scores (over a bare ridge) would run
    hundreds of times above the final fit's and the threshold would flag nothing. Then each image
    is left out alone, and every fold fit keeps a spread, as the final one does. (With one image a
    class, :func:`calibrate` stores no outlier flag at all.)
    """
    largest = int(torch.bincount(labels.long()).max())
    folds = labels.numel() if largest <= 2 else max(2, min(head_folds, largest))
    return stratified_folds(labels, folds, seed)


def _tensor(tensors: dict[str, torch.Tensor], name: str, dims: int) -> torch.Tensor:
    value = tensors.get(name)
    if value is None or value.dim() != dims:
        raise AdapterError(f"the adapter's calibration lacks a valid {name} tensor",
                           "the file is damaged or was edited; refit the adapter")
    return value


def _load_conformal(tensors: dict[str, torch.Tensor], record: dict[str, Any], num_classes: int,
                    dim: int) -> ConformalCalibration:
    scores, folds = _tensor(tensors, "conformal_scores", 1), _tensor(tensors, "conformal_folds", 1).long()
    weight = bias = scale = None
    if record.get("method") == "cv+":
        weight = _tensor(tensors, "conformal_fold_weight", 3)
        bias, scale = _tensor(tensors, "conformal_fold_bias", 2), _tensor(tensors, "conformal_fold_scale", 1)
        shapes_ok = (tuple(weight.shape[1:]) == (num_classes, dim) and tuple(bias.shape) == tuple(weight.shape[:2])
                     and scale.shape[0] == weight.shape[0])
    else:
        shapes_ok = True
    k = 1 if weight is None else int(weight.shape[0])
    if not shapes_ok or folds.shape != scores.shape or (folds.numel() and (int(folds.min()) < 0 or int(folds.max()) >= k)):
        raise AdapterError("the adapter's calibration tensors do not match its classes or feature size",
                           "the file is damaged or was edited; refit the adapter")
    if record.get("folds", k) != k:
        raise AdapterError(f"the adapter's calibration records {record.get('folds')} fold models but stores {k}",
                           "the file is damaged or was edited; refit the adapter")
    # 1 - p(true class) lies in [0, 1]; outside it no fit wrote it, and sets built on it would be wrong.
    _in_range(scores, 0.0, 1.0, "conformal_scores", "from 0 to 1 (one minus a probability)")
    return ConformalCalibration(scores, folds, weight, bias, scale, str(record.get("caveat", "")))


def _in_range(values: torch.Tensor, low: float, high: float, name: str, wanted: str) -> None:
    # float32 rounding of 1 - p or 1 - cos can fall a hair outside the range in files a fit wrote.
    slack = 1e-5
    if values.numel() == 0 or not bool(((values >= low - slack) & (values <= high + slack)).all()):
        raise AdapterError(f"the adapter's {name} are not all {wanted}" if values.numel() else
                           f"the adapter stores no {name}", "the file is damaged or was edited; refit the adapter")


def _positive_definite(matrix: torch.Tensor) -> bool:
    """Symmetric (to float32 rounding) with a Cholesky factor: what an inverse shrunk covariance is."""
    m = matrix.double()
    if not torch.allclose(m, m.t(), rtol=1e-4, atol=1e-6 * float(m.abs().max().clamp(min=1e-30))):
        return False
    return torch.linalg.cholesky_ex(m).info.item() == 0


def _load_outliers(tensors: dict[str, torch.Tensor], record: dict[str, Any], num_classes: int,
                   dim: int) -> OutlierCalibration:
    # The tensors say which score, not the record's wording; either Mahalanobis tensor alone means the other was lost.
    mahalanobis = "outlier_precision" in tensors or "outlier_means" in tensors
    means = _tensor(tensors, "outlier_means" if mahalanobis else "outlier_prototypes", 2)
    precision = _tensor(tensors, "outlier_precision", 2) if mahalanobis else None
    if tuple(means.shape) != (num_classes, dim) or (precision is not None and tuple(precision.shape) != (dim, dim)):
        raise AdapterError("the adapter's outlier calibration does not match its classes or feature size",
                           "the file is damaged or was edited; refit the adapter")
    scores = _tensor(tensors, "outlier_scores", 1)
    _in_range(scores, 0.0, math.inf, "outlier_scores", "0 or more (distances)")
    if precision is not None and not _positive_definite(precision):
        raise AdapterError("the adapter's outlier_precision is not a symmetric positive definite matrix (no fit "
                           "writes one: every distance would be wrong)", "the file is damaged or was edited; refit the adapter")
    flag = OutlierCalibration(means, scores, precision, float(record.get("rate", outliers.DEFAULT_RATE)))
    recorded = record.get("threshold")
    if isinstance(recorded, (int, float)) and abs(recorded - flag.threshold) > 1e-6 * (1 + abs(flag.threshold)):
        # `info` shows the recorded threshold, predict uses the scores': they must agree.
        raise AdapterError(f"the adapter's outlier threshold {recorded} is not the one its scores give "
                           f"({flag.threshold:.6g})", "the file is damaged or was edited; refit the adapter")
    return flag


def load_calibration(tensors: dict[str, torch.Tensor], record: dict[str, Any] | None, *, num_classes: int,
                     dim: int) -> Calibration:
    """The calibration stored in an adapter (empty for adapters written before it existed)."""
    record = record or {}
    part = None
    if isinstance(record.get("conformal"), dict):
        part = _load_conformal(tensors, record["conformal"], num_classes, dim)
    flag = None
    if isinstance(record.get("outliers"), dict):
        flag = _load_outliers(tensors, record["outliers"], num_classes, dim)
    return Calibration(part, flag, str(record.get("note", "")))


@dataclass
class Assessment:
    """Per new image: probabilities, set membership (with a level), outlier score and flag (when calibrated)."""

    probs: torch.Tensor  # [N, C]
    sets: torch.Tensor | None = None  # [N, C] bool
    outlier_scores: torch.Tensor | None = None  # [N]
    outliers: torch.Tensor | None = None  # [N] bool


@torch.no_grad()
def assess(head: BioMedVRHead, encode: Encode, calibration: Calibration, images: torch.Tensor, level: float | None, *,
           device: torch.device | None = None, batch_size: int = 256) -> Assessment:
    """One pass over ``images``: probabilities, sets at ``level`` (needs set calibration), outlier flags."""
    fused, sentences, features = head_outputs(head, encode, images, batch_size=batch_size, device=device)
    result = Assessment(torch.softmax(fused, dim=1))
    if not bool(torch.isfinite(result.probs).all()):  # NaN never reaches a set, a flag or a metric
        raise BackboneUnavailableError("the backbone with this adapter gave non-finite probabilities (NaN or inf): "
                                       "the weights are corrupt", "copy or export the backbone again, or refit the adapter")
    if level is not None:
        part = calibration.conformal
        if part is None:
            raise AdapterError("this adapter has no calibration for prediction sets", refit_hint(calibration))
        result.sets = conformal.prediction_sets(part.probabilities(fused, sentences, features), part.scores,
                                                part.folds, level, top=result.probs.argmax(1))
    if calibration.outliers is not None:
        result.outlier_scores = calibration.outliers.score(features)
        result.outliers = result.outlier_scores > calibration.outliers.threshold
    return result


def refit_hint(calibration: Calibration) -> str:
    """How to get a calibration this adapter lacks."""
    if calibration.note:
        return calibration.note
    return "refit the adapter with this biomedvr (`biomedvr fit`): adapters written before prediction sets existed have none"

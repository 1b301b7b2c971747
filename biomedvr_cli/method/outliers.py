"""Outlier scores: how unlike every fitted class an image's feature is.

Score: the smallest squared Mahalanobis distance of ``f`` (the L2-normalised
image feature through the adapter's positive view) to a class mean of the labelled images,
``min_c (f - m_c)^T P (f - m_c)``, with one covariance shared by all classes (the spread of each
image around its own class mean) shrunk toward a multiple of the identity by the Ledoit-Wolf
formula, plus a small ridge, and ``P`` its inverse. Image-to-image, not image-to-sentence: in
CLIP-like models every image sits about equally far from all text (the modality gap). The
covariance matters because the directions in which a task's images vary are few: an image of
another kind that happens to lie at a similar cosine from a class mean lies off those
directions. Shrinkage makes a covariance in hundreds of dimensions usable from a handful of
images a class. Chosen on the built-in tasks with experiments/calibration_study.py (docs/trust.md).

Adapters written before this score (development builds of 0.3.0 before 2026-12-06) store the
earlier one, ``1 - max_c cos(f, m_c)`` against the normalised class means (``COSINE``), and keep
using it.

Threshold: each labelled image gets a score from a fit that did not see it (the class means and
covariance refitted without its fold; the folds of the feature head's cross-validation), and the
threshold is the ``ceil((n + 1) * (1 - rate))``-th smallest of the ``n`` scores, so a new image
exchangeable with them is flagged with probability at most about ``rate`` (the conformal
argument; a fold fit sees fewer images than the final one, which errs toward flagging fewer;
``1 / (n + 1)`` when ``n`` is too small for ``rate``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# The share of images like the labelled ones that may be flagged (docs/trust.md).
DEFAULT_RATE = 0.05
COSINE = "1 - max cosine of the image feature to the class means of the labelled images"
MAHALANOBIS = ("min squared Mahalanobis distance of the image feature to the class means of the labelled images "
               "(shared covariance, Ledoit-Wolf shrinkage)")
# Ridge added to the shrunk covariance, as a share of the features' mean variance: keeps the
# precision finite when every class has one image (no spread to estimate).
RIDGE = 1e-3


def cosine_scores(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``1 - max cosine`` [N] to normalised class means (the score of adapters written before the Mahalanobis one)."""
    cosine = F.normalize(features.float(), dim=1) @ prototypes.float().t()
    return 1.0 - cosine.max(dim=1).values


def fit_gaussian(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means [C, D] of the L2-normalised features and the shared shrunk precision [D, D].

    A class without images gets a row of NaN (:func:`mahalanobis_scores` skips it).
    """
    from sklearn.covariance import ledoit_wolf

    x, labels = F.normalize(features.double(), dim=1), labels.long()
    counts = torch.bincount(labels, minlength=num_classes)
    sums = torch.zeros(num_classes, x.shape[1], dtype=torch.float64).index_add_(0, labels, x)
    means = sums / counts.clamp(min=1).unsqueeze(1)
    residuals = x - means[labels]
    if residuals.shape[0] >= 2 and float(residuals.abs().max()) > 0:
        covariance = torch.from_numpy(ledoit_wolf(residuals.numpy(), assume_centered=True)[0])
    else:  # no spread around the means to estimate (one image a class)
        covariance = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    spread = float(x.var(0, unbiased=False).mean()) if x.shape[0] > 1 else 0.0
    ridge = RIDGE * spread + 1e-9
    precision = torch.linalg.inv(covariance + ridge * torch.eye(x.shape[1], dtype=torch.float64))
    means[counts == 0] = float("nan")
    return means.float(), precision.float()


def mahalanobis_scores(features: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``min_c (f - m_c)^T P (f - m_c)`` [N] over the classes with a mean (higher: less like any class)."""
    x = F.normalize(features.double(), dim=1)
    present = ~torch.isnan(means).any(1)
    if not bool(present.any()):
        return torch.full((x.shape[0],), float("inf"))
    m, p = means[present].double(), precision.double()
    # (x - m) P (x - m) = xPx - 2 xPm + mPm, without an [N, C, D] tensor.
    xp = x @ p
    distance = (xp * x).sum(1, keepdim=True) - 2 * xp @ m.t() + ((m @ p) * m).sum(1).unsqueeze(0)
    return distance.min(1).values.clamp(min=0).float()


def cross_fitted_scores(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        fold_of: torch.Tensor) -> torch.Tensor:
    """Each labelled image's Mahalanobis score under the means and covariance fitted without its fold [N]."""
    scores = torch.empty(labels.numel())
    for k in fold_of.unique().tolist():
        held = fold_of == k
        if bool((~held).any()):
            means, precision = fit_gaussian(features[~held], labels[~held], num_classes)
            scores[held] = mahalanobis_scores(features[held], means, precision)
        else:  # one fold holds every image: nothing to compare with, as far as can be
            scores[held] = float("inf")
    return scores


def conformal_threshold(scores: torch.Tensor, rate: float) -> float:
    """The ``ceil((n + 1)(1 - rate))``-th smallest score (the largest when ``n`` is too small)."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"the outlier rate must be between 0 and 1, got {rate:g}")
    ordered = torch.sort(scores.double()).values
    if ordered.numel() == 0:
        raise ValueError("no scores to calibrate an outlier threshold on")
    rank = min(ordered.numel(), math.ceil((ordered.numel() + 1) * (1.0 - rate) - 1e-9))
    return float(ordered[rank - 1])


def auroc(inlier_scores: torch.Tensor, outlier_scores_: torch.Tensor) -> float:
    """Probability that an outlier scores above an inlier (ties count half): the ROC AUC."""
    inl, out = inlier_scores.double().view(-1), outlier_scores_.double().view(-1)
    if inl.numel() == 0 or out.numel() == 0:
        raise ValueError("AUROC needs at least one image of each kind")
    ordered = torch.sort(inl).values
    below = torch.searchsorted(ordered, out, right=False).double()  # inliers strictly below each outlier
    ties = torch.searchsorted(ordered, out, right=True).double() - below
    return float((below.sum() + 0.5 * ties.sum()) / (inl.numel() * out.numel()))

"""Outlier scores: how unlike every fitted class an image's feature is.

Score: ``1 - max_c cos(f, m_c)``, with ``f`` the image feature through the adapter's positive
view and ``m_c`` the normalised mean feature of class ``c``'s labelled images. Image-to-image
similarity, not image-to-sentence: in CLIP-like models every image sits about equally far from
all text (the modality gap), while an image of another kind sits far from the class means.
Class means rather than a covariance (Mahalanobis): with a handful of images a class, a
covariance in hundreds of dimensions cannot be estimated.

Threshold: each labelled image gets a leave-one-out score (its own class's mean without it),
and the threshold is the ``ceil((n + 1) * (1 - rate))``-th smallest of the ``n`` scores, so a new
image exchangeable with them is flagged with probability at most ``rate`` (the conformal
argument; ``1 / (n + 1)`` when ``n`` is too small for ``rate``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# The share of images like the labelled ones that may be flagged (docs/trust.md).
DEFAULT_RATE = 0.05
SCORE = "1 - max cosine of the image feature to the class means of the labelled images"


def class_prototypes(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Normalised class means [C, D] of L2-normalised features (zero rows for classes without images)."""
    features, labels = features.float(), labels.long()
    sums = torch.zeros(num_classes, features.shape[1]).index_add_(0, labels, features)
    return F.normalize(sums, dim=1)


def outlier_scores(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``1 - max cosine`` [N] of each feature to the class prototypes (higher: less like any class)."""
    cosine = F.normalize(features.float(), dim=1) @ prototypes.float().t()
    return 1.0 - cosine.max(dim=1).values


def leave_one_out_scores(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each labelled image's score against prototypes built without it [N].

    A class whose only image is the one left out has no prototype for it, so that image is
    scored against the other classes.
    """
    features, labels = F.normalize(features.float(), dim=1), labels.long()
    sums = torch.zeros(num_classes, features.shape[1]).index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes)
    cosine = features @ F.normalize(sums, dim=1).t()  # [N, C], other classes' columns are final
    own = sums[labels] - features  # the own class's sum without the image
    own_cos = (features * F.normalize(own, dim=1)).sum(1)
    own_cos[counts[labels] <= 1] = -math.inf
    cosine = cosine.scatter(1, labels.view(-1, 1), own_cos.view(-1, 1))
    cosine[:, counts == 0] = -math.inf
    best = cosine.max(dim=1).values
    return 1.0 - best.clamp(min=-1.0)  # nothing to compare with (one image in all): as far as can be


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

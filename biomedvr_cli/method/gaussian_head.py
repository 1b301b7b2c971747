"""Gaussian heads: the feature head's second family of candidates (``head_family`` ``logistic+gaussian``).

A shared-covariance Gaussian classifier on the image features, added to the sentence scores:

    logits = a * z0 + s * (f @ (M P).T - 0.5 * diag(M P M.T)),
    P = ((1 - r) S + r * tr(S) / D * I)^-1

with ``M`` the class means of the labelled features, ``S`` their pooled within-class covariance,
``r`` the shrinkage toward a multiple of the identity, ``s`` the head's scale and ``a`` the
weight kept on the sentence scores. The logistic heads pull their weights toward zero in the
plain (Euclidean) metric of the features; this one weighs the directions in which the classes
differ against those in which images of one class vary, which few-shot work on CLIP-like models
(training-free GDA) finds strong at a few images a class. It is linear in ``f``, so the adapter
stores it as the logistic head is stored (``V = s * M P``, ``b = -s/2 diag(M P M.T)``, ``a``).
Chosen on the built-in and design tasks with experiments/head_gda_study.py (docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GaussianHead:
    """One candidate: its shrinkage ``r``, scale ``s`` and sentence weight ``a``."""

    shrinkage: float
    scale: float
    sentence_weight: float

    def describe(self) -> str:
        return (f"Gaussian head (shrinkage {self.shrinkage:g}, scale {self.scale:g}, "
                f"sentence weight {self.sentence_weight:g})")


def candidates(shrinkages: tuple[float, ...], scales: tuple[float, ...],
               sentence_weights: tuple[float, ...]) -> list[GaussianHead]:
    """Every combination of the config's grids, in a fixed order (ties keep the first)."""
    return [GaussianHead(r, s, a) for r in shrinkages for s in scales for a in sentence_weights]


def class_discriminant(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                       shrinkage: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(``M P`` [C, D], ``-0.5 diag(M P M.T)`` [C]), or None when a class has no image or the
    features do not vary within their classes (one image a class: no covariance to estimate)."""
    x = features.double()
    counts = torch.bincount(labels, minlength=num_classes)
    if bool((counts == 0).any()):
        return None
    means = torch.zeros(num_classes, x.shape[1], dtype=torch.float64).index_add_(0, labels, x) / counts[:, None]
    residual = x - means[labels]
    scatter = residual.t() @ residual / max(x.shape[0] - num_classes, 1)
    spread = float(torch.trace(scatter)) / x.shape[1]
    if not spread > 0:
        return None
    shrunk = (1 - shrinkage) * scatter + shrinkage * spread * torch.eye(x.shape[1], dtype=torch.float64)
    weight = torch.linalg.solve(shrunk, means.t()).t()  # M P, as P is symmetric
    return weight.float(), (-0.5 * (weight * means).sum(1)).float()


def solve_gaussian(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   head: GaussianHead) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(V, b, a) of ``head`` fitted on these images; the sentence scores alone when it cannot be fitted."""
    fitted = class_discriminant(features, labels, num_classes, head.shrinkage)
    if fitted is None:
        return torch.zeros(num_classes, features.shape[1]), torch.zeros(num_classes), 1.0
    weight, bias = fitted
    # Stored centred over the classes: the softmax is the same, and the numbers are ~100x smaller (with
    # CLIP-like features every class mean shares a large component), so low-precision arithmetic on a
    # GPU cannot drown the differences between classes.
    weight, bias = weight - weight.mean(0, keepdim=True), bias - bias.mean()
    return head.scale * weight, head.scale * bias, head.sentence_weight


def held_out_scores(features: torch.Tensor, labels: torch.Tensor, num_classes: int, shrinkage: float,
                    fold_of: torch.Tensor, folds: int) -> torch.Tensor | None:
    """Discriminant scores [N, C] (``f @ (M P).T - 0.5 diag(M P M.T)``) of each image from the class
    means and covariance fitted without its fold; None when a fold's fit is impossible. Every scale
    and sentence weight of one shrinkage share them."""
    scores = torch.zeros(labels.numel(), num_classes)
    for k in range(folds):
        held = fold_of == k
        if not bool(held.any()):
            continue
        fitted = class_discriminant(features[~held], labels[~held], num_classes, shrinkage)
        if fitted is None:
            return None
        weight, bias = fitted
        scores[held] = features[held] @ weight.t() + bias
    return scores


def held_out_logits(offsets: torch.Tensor, scores: torch.Tensor, head: GaussianHead) -> torch.Tensor:
    """Held-out logits [N, C] of ``head`` from the held-out discriminant scores of its shrinkage."""
    return head.sentence_weight * offsets + head.scale * scores

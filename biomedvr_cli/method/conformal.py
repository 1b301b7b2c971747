"""Conformal prediction sets: the score, the set rule, and how to check a level.

Score: ``s(x, y) = 1 - p(y | x)`` (LAC, Sadinle, Lei & Wasserman 2019). Of the usual scores it
gives the smallest mean set size at a given coverage; adaptive scores (APS, RAPS) trade size
for more even coverage across easy and hard images, and with a handful of shots and sets that
must stay small, size matters more.

Set rule (CV+ for classification: Barber et al. 2021; Romano, Sesia & Candes 2020). Each of
the ``n`` calibration images ``i`` has a score ``s_i`` from the fold model ``k(i)`` that did not
see it. For a new image ``x`` a class ``y`` is in the set when

    #{ i : s_i < s_{k(i)}(x, y) }  <  level * (n + 1)

that is, when fewer than ``level * (n + 1)`` calibration images look stranger than ``(x, y)``
does to the same fold model. With one model for every image (``k(i) = 0``, the split
conformal case) this is the usual ``s(x, y) <= q``, with ``q`` the ``ceil(level * (n + 1))``-th
smallest score, and the set holds the true class with probability at least ``level`` when the
calibration and new images are exchangeable. With K fold models the worst case is
``2 * level - 1`` minus a small term; in practice it is close to ``level`` (docs/trust.md).

A level needs ``ceil(level * (n + 1)) <= n``; above that every class is always in the set
(the rule itself gives the full set), which :func:`level_supported` tells beforehand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

SCORE = "1 - p(class) (LAC)"


def check_level(level: float) -> float:
    """``level`` as a float in (0, 1); ValueError otherwise."""
    level = float(level)
    if not (math.isfinite(level) and 0.0 < level < 1.0):
        raise ValueError(f"a coverage level must be between 0 and 1 (exclusive), got {level:g}")
    return level


def level_supported(n: int, level: float) -> bool:
    """Whether ``n`` calibration scores can give sets smaller than all classes at ``level``."""
    return n > 0 and math.ceil(level * (n + 1) - 1e-9) <= n


def images_needed(level: float) -> int:
    """The fewest calibration images that support ``level``: ``n >= level / (1 - level)``."""
    return max(1, math.ceil(level / (1.0 - level) - 1e-9))


def assured_level(n: int, level: float, assurance: float) -> float | None:
    """The level to ask for so that an adapter's own coverage is at least ``level`` with probability ``assurance``.

    The guarantee of ``level`` is an average over draws of the ``n`` calibration images; the
    coverage of one adapter varies around it. With split conformal, the coverage of the sets
    whose threshold is the ``r``-th smallest score follows Beta(r, n + 1 - r) over those draws
    (training-conditional validity, Vovk 2012). This returns ``r / (n + 1)`` for the smallest
    ``r`` whose Beta law puts at most ``1 - assurance`` below ``level``, or None when no
    ``r <= n`` does (too few images). For CV+ it is an approximation (docs/trust.md).
    """
    from scipy.special import betainc

    level, assurance = check_level(level), check_level(assurance)

    def passes(rank: int) -> bool:  # P(coverage < level) <= 1 - assurance; it falls as the rank rises
        return float(betainc(rank, n + 1 - rank, level)) <= 1.0 - assurance

    low, high = max(1, math.ceil(level * (n + 1) - 1e-9)), n
    if low > high or not passes(high):
        return None
    while low < high:  # the smallest passing rank, in log(n) steps: an edited count of 10**18 costs nothing
        middle = (low + high) // 2
        low, high = (low, middle) if passes(middle) else (middle + 1, high)
    return low / (n + 1)


def lac_scores(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Nonconformity of each image with its true class: ``1 - p(true class)`` [N]."""
    return 1.0 - probs.gather(1, labels.long().view(-1, 1)).squeeze(1)


def prediction_sets(test_probs: torch.Tensor, scores: torch.Tensor, folds: torch.Tensor, level: float,
                    top: torch.Tensor | None = None) -> torch.Tensor:
    """Membership [N, C] (bool) of each class in each new image's set.

    ``test_probs`` [N, K, C] are the new images' probabilities under each of the K fold models
    (K = 1: split conformal); ``scores`` [n] and ``folds`` [n] the calibration scores and the
    fold model each came from. ``top`` [N], when given, is put in any set that would be empty
    (a superset keeps the guarantee; an empty set helps nobody read a result).
    """
    level = check_level(level)
    n, (count_rows, _, n_classes) = int(scores.numel()), test_probs.shape
    counts = torch.zeros(count_rows, n_classes, dtype=torch.long)
    for k in range(test_probs.shape[1]):
        mine = torch.sort(scores[folds == k].float()).values
        if mine.numel():
            # searchsorted (left) counts the calibration scores strictly below each new score.
            new = (1.0 - test_probs[:, k, :].float()).contiguous()
            counts += torch.searchsorted(mine, new.view(-1), right=False).view(count_rows, n_classes)
    members = counts.double() < level * (n + 1)
    if top is not None:
        empty = ~members.any(1)
        members[empty, top.long()[empty]] = True
    return members


def set_metrics(members: torch.Tensor, labels: Sequence[int], classes: Sequence[str]) -> dict[str, Any]:
    """Empirical coverage and mean set size, overall and per true class (None for absent classes)."""
    labels_t = torch.as_tensor(list(labels), dtype=torch.long)
    covered = members[torch.arange(labels_t.numel()), labels_t].double()
    sizes = members.sum(1).double()
    per_class = []
    for c, name in enumerate(classes):
        mine = labels_t == c
        has = bool(mine.any())
        per_class.append({"class": name, "coverage": float(covered[mine].mean()) if has else None,
                          "mean_set_size": float(sizes[mine].mean()) if has else None})
    return {"coverage": float(covered.mean()), "mean_set_size": float(sizes.mean()), "per_class": per_class}


def fold_probabilities(sentences: torch.Tensor, features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       scale: torch.Tensor) -> torch.Tensor:
    """Probabilities [N, K, C] under K feature heads: ``softmax(a_k * sentences + f @ V_k.T + b_k)``."""
    logits = (scale.view(1, -1, 1) * sentences.float()[:, None, :]
              + torch.einsum("nd,kcd->nkc", features.float(), weight.float()) + bias.float()[None])
    return torch.softmax(logits, dim=2)


def level_text(level: float, images: int) -> str:
    """``level`` with the fewest decimals (3 at least) that builds the same sets from ``images``
    calibration scores: rounded down, since rounding up can take the next score (larger sets)."""
    rank = math.ceil(level * (images + 1) - 1e-9)
    for digits in range(3, 16):
        shown = math.floor(level * 10**digits) / 10**digits
        if math.ceil(shown * (images + 1) - 1e-9) == rank and level_supported(images, shown):
            return f"{shown:.{digits}f}"
    return repr(level)

"""Cross-entropy plus the Confusion-Suppression hinge (docs/method.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

HINGE_CLAMP = 1e3


def confusion_suppression(fused: torch.Tensor, negative: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """mean_i ReLU(max_c neg_ic - z_iy + m): the true class must beat every confusion score by m."""
    true_logit = fused.gather(1, labels[:, None]).squeeze(1)
    hinge = F.relu(negative.max(dim=1).values - true_logit + margin)
    return hinge.clamp(max=HINGE_CLAMP).mean()


def biomedvr_loss(
    fused: torch.Tensor,
    negative: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    beta: float,
    margin: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts; the hinge is skipped without a negative expert or with beta 0."""
    ce = F.cross_entropy(fused, labels)
    parts = {"ce": float(ce.detach())}
    if negative is None or beta == 0:
        return ce, parts
    cs = confusion_suppression(fused, negative, labels, margin)
    parts["cs"] = float(cs.detach())
    return ce + beta * cs, parts

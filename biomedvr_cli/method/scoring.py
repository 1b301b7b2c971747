"""k-nearest attribute scoring (docs/method.md, "k-nearest attribute scoring").

For an image feature f and class c with sentence embeddings t_c1..t_cm the class score
is the mean of the top-k values of tau * cos(f, t_cj). Sentences are never duplicated:
a class with fewer than k sentences averages over all it has.
"""

from __future__ import annotations

import torch


def class_slots(owner: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index table [C, L] of each class's sentences (padded with 0) and the counts [C]."""
    counts = torch.bincount(owner, minlength=num_classes)
    width = max(1, int(counts.max().item()) if owner.numel() else 1)
    table = torch.zeros(num_classes, width, dtype=torch.long)
    for c in range(num_classes):
        idx = (owner == c).nonzero(as_tuple=True)[0]
        table[c, : idx.numel()] = idx
    return table, counts


def knn_attribute_logits(
    image_features: torch.Tensor,
    bank: torch.Tensor,
    owner: torch.Tensor,
    num_classes: int,
    *,
    k: int,
    tau: float,
    slots: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Score images against a sentence bank: [N, D] x [M, D] -> [N, C].

    ``image_features`` and ``bank`` must be L2-normalised; ``owner[j]`` is the class
    index of sentence j. Each class's logit is the mean of its top-k scaled cosines.
    ``slots`` (from :func:`class_slots`) may be passed to skip rebuilding the table.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    table, counts = slots if slots is not None else class_slots(owner.cpu(), num_classes)
    table, counts = table.to(bank.device), counts.to(bank.device)
    if bool((counts == 0).any()):
        raise ValueError("every class needs at least one sentence in the bank")
    sims = tau * (image_features @ bank.t())  # [N, M]
    per_class = sims[:, table]  # [N, C, L]
    width = table.shape[1]
    valid = torch.arange(width, device=bank.device)[None, :] < counts[:, None]  # [C, L]
    per_class = per_class.masked_fill(~valid[None], float("-inf"))
    kk = min(k, width)
    top = per_class.topk(kk, dim=2).values  # [N, C, kk]
    used = counts.clamp(max=k)  # per class: how many of the top-k are real sentences
    top_valid = torch.arange(kk, device=bank.device)[None, :] < used[:, None]
    top = top.masked_fill(~top_valid[None], 0.0)
    return top.sum(dim=2) / used[None].to(top.dtype)

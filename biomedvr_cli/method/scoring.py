"""k-nearest attribute scoring (method.md, "Attribute scoring").

For an image feature f and class c with sentence embeddings t_c1..t_cm the class score
is the mean of the top-k values of tau * cos(f, t_cj). Sentences are never duplicated:
a class with fewer than k sentences averages over all it has.
"""

from __future__ import annotations

import torch


def knn_attribute_logits(
    image_features: torch.Tensor,
    bank: torch.Tensor,
    owner: torch.Tensor,
    num_classes: int,
    *,
    k: int,
    tau: float,
) -> torch.Tensor:
    """Score images against a sentence bank: [N, D] x [M, D] -> [N, C].

    ``image_features`` and ``bank`` must be L2-normalised; ``owner[j]`` is the class
    index of sentence j. Each class's logit is the mean of its top-k scaled cosines.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    sims = tau * (image_features @ bank.t())  # [N, M]
    logits = []
    for c in range(num_classes):
        cls_sims = sims[:, owner == c]
        kk = min(k, cls_sims.shape[1])
        logits.append(cls_sims.topk(kk, dim=1).values.mean(dim=1))
    return torch.stack(logits, dim=1)

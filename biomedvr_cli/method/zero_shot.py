"""Zero-shot scoring on the frozen backbone: no VR, no training.

The same k-nearest attribute scoring as the positive expert (mean of the descriptive
and distinctive scores), applied to plain images. With class-name templates instead of
attributes it is the classic CLIP zero-shot baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from biomedvr_cli.method.scoring import knn_attribute_logits
from biomedvr_cli.method.textbanks import class_name_sentences, collect_sentences, encode_bank

POSITIVE_SETS = ("descriptive", "distinctive")


@torch.no_grad()
def image_features(backbone, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised features of uint8 images [N,3,S,S], on CPU."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(backbone.device).float() / 255.0
        out.append(backbone.encode_images(batch).cpu())
    return torch.cat(out) if out else torch.empty(0, backbone.embed_dim)


@torch.no_grad()
def zero_shot_logits(
    backbone,
    features: torch.Tensor,
    classes: Sequence[str],
    sets: Mapping[str, Mapping[str, Sequence[str]]] | None,
    *,
    k: int = 3,
    m: int | None = 20,
) -> torch.Tensor:
    """Logits [N, C]: attributes when ``sets`` is given, else class-name templates."""
    sets = sets if sets is not None else class_name_sentences(classes)
    scores = []
    for set_name in POSITIVE_SETS:
        sentences, owners = collect_sentences(classes, sets, set_name, m)
        bank = encode_bank(backbone.encode_texts, sentences, owners)
        scores.append(knn_attribute_logits(features, bank.embeddings, bank.owner, len(classes), k=k, tau=backbone.logit_scale))
    return torch.stack(scores).mean(0)

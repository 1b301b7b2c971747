"""The BioMedVR head: two VR views, attribute experts, a gate and their fusion.

The frozen backbone is passed in as an ``encode`` function; the head owns only what
is learned (VR patterns, mask net, gate) and the fixed text banks (as buffers), so its
``state_dict`` is exactly what the adapter file stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from biomedvr_cli.method.config import MethodConfig
from biomedvr_cli.method.gates import make_gate
from biomedvr_cli.method.scoring import class_slots, knn_attribute_logits
from biomedvr_cli.method.textbanks import TextBank
from biomedvr_cli.method.vr import make_vr

__all__ = ["BioMedVRHead", "HeadOutput", "MethodConfig"]


@dataclass
class HeadOutput:
    """Fused logits and the experts' own logits (negative is None without that expert)."""

    fused: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor | None
    pos_features: torch.Tensor
    neg_features: torch.Tensor | None


class BioMedVRHead(nn.Module):
    """Learned parts of BioMedVR plus the fixed sentence banks."""

    def __init__(
        self,
        config: MethodConfig,
        num_classes: int,
        image_size: int,
        feature_dim: int,
        tau: float,
        banks: dict[str, TextBank],
    ) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.tau = float(tau)
        self.use_negative = config.negative and "confusion" in banks and len(banks["confusion"]) > 0
        self.vr_pos = make_vr(config.vr, image_size, frame=config.vr_frame, eps=config.vr_eps)
        names = ["descriptive", "distinctive"] + (["confusion"] if self.use_negative else [])
        self.bank_names = tuple(names)
        self._slots: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name in names:
            bank = banks[name]
            self.register_buffer(f"bank_{name}", bank.embeddings.float().clone())
            self.register_buffer(f"owner_{name}", bank.owner.long().clone())
            self._slots[name] = class_slots(bank.owner.long().cpu(), num_classes)
        if self.use_negative:
            self.vr_neg = make_vr(config.vr, image_size, frame=config.vr_frame, eps=config.vr_eps)
            self.gate = make_gate(config.gate, num_classes, feature_dim)

    def score(self, features: torch.Tensor, bank_name: str) -> torch.Tensor:
        """k-nearest attribute logits of ``features`` against one bank."""
        return knn_attribute_logits(
            features,
            getattr(self, f"bank_{bank_name}"),
            getattr(self, f"owner_{bank_name}"),
            self.num_classes,
            k=self.config.k,
            tau=self.tau,
            slots=self._slots[bank_name],
        )

    def positive_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Positive expert: mean of descriptive and distinctive scores."""
        return 0.5 * (self.score(features, "descriptive") + self.score(features, "distinctive"))

    def forward(self, images01: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> HeadOutput:
        """Apply both VR views, encode them in one batched call, score and fuse."""
        if not self.use_negative:
            pos_feat = encode(self.vr_pos(images01))
            positive = self.positive_logits(pos_feat)
            return HeadOutput(positive, positive, None, pos_feat, None)
        views = torch.cat([self.vr_pos(images01), self.vr_neg(images01)])
        features = encode(views)
        pos_feat, neg_feat = features.split(images01.shape[0])
        positive = self.positive_logits(pos_feat)
        negative = self.score(neg_feat, "confusion")
        g_pos, g_neg = self.gate(pos_feat)
        sign = 1.0 if self.config.combine == "add" else -1.0
        fused = g_pos * positive + sign * g_neg * negative
        return HeadOutput(fused, positive, negative, pos_feat, neg_feat)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Copy of the learned tensors (for keeping the best epoch)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items() if not k.startswith(("bank_", "owner_"))}

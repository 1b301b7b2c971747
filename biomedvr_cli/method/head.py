"""The BioMedVR head: two VR views, attribute experts, a gate, their fusion and a feature head.

The frozen backbone is passed in as an ``encode`` function; the head owns only what
is learned (VR patterns, mask net, gate, feature head) and the fixed text banks (as
buffers), so its ``state_dict`` is exactly what the adapter file stores.

Logits are ``sentences + feature``: the sentence scores (experts fused by the gate, times a
weight ``a`` that starts at 1) plus, with ``feature_head``, a linear map of the positive
view's image feature (``tau * f @ W.T + b``). ``W`` and ``b`` start at zero and are fitted after the VR
patterns (``method.feature_head``), so with ``combine="signed"`` the untrained head is the
attribute zero-shot scorer.
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
    """Fused logits, their two parts, and the experts' own logits (negative is None without that expert)."""

    fused: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor | None
    pos_features: torch.Tensor
    neg_features: torch.Tensor | None
    sentences: torch.Tensor  # the experts fused by the gate (before the feature head's weight ``a``)
    feature: torch.Tensor | None  # the feature head's part (None without one)


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
        self.feature_dim = feature_dim
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
            self.gate = make_gate(config.gate, num_classes, feature_dim, signed=config.combine == "signed")
        if config.feature_head:
            # Buffers, not parameters: fitted in closed form after the VR patterns, never by SGD.
            self.register_buffer("head_weight", torch.zeros(num_classes, feature_dim))
            self.register_buffer("head_bias", torch.zeros(num_classes))
            self.register_buffer("sentence_scale", torch.ones(()))

    def score(self, features: torch.Tensor, bank_name: str) -> torch.Tensor:
        """k-nearest attribute logits of ``features`` against one bank (in fp32, also under autocast)."""
        with torch.autocast(device_type=features.device.type, enabled=False):
            return knn_attribute_logits(
                features.float(),
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

    def feature_logits(self, features: torch.Tensor) -> torch.Tensor | None:
        """The feature head's logits ``tau * f @ W.T + b`` (None without a feature head)."""
        if not self.config.feature_head:
            return None
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.tau * (features.float() @ self.head_weight.t()) + self.head_bias

    def plain_views(self) -> bool:
        """Whether every view is the image itself (untrained full or mask VR): then one encoder pass serves both."""
        return self.vr_pos.is_identity() and (not self.use_negative or self.vr_neg.is_identity())

    @property
    def encoder_passes(self) -> int:
        """Image-encoder passes an image costs at prediction time in the current state (1 or 2)."""
        return 2 if self.use_negative and not self.plain_views() else 1

    def encode_views(self, images01: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]):
        """Image features of the positive view and (with a negative expert) the negative view.

        When both views are the plain image (nearly every fit: VR is kept only when it clearly
        helps), the image is encoded once and both experts read the same features. Only without
        autograd: in training each view must receive its own gradient, as before.
        """
        if not self.use_negative:
            return encode(self.vr_pos(images01)), None
        if not torch.is_grad_enabled() and self.encoder_passes == 1:
            features = encode(self.vr_pos(images01))
            return features, features
        views = torch.cat([self.vr_pos(images01), self.vr_neg(images01)])
        pos_feat, neg_feat = encode(views).split(images01.shape[0])
        return pos_feat, neg_feat

    def sentence_logits(self, pos_feat: torch.Tensor, neg_feat: torch.Tensor | None):
        """The experts' logits and their fusion by the gate: (fused, positive, negative)."""
        positive = self.positive_logits(pos_feat)
        if neg_feat is None:
            return positive, positive, None
        negative = self.score(neg_feat, "confusion")
        g_pos, g_neg = self.gate(pos_feat.float())
        sign = -1.0 if self.config.combine == "subtract" else 1.0
        return g_pos * positive + sign * g_neg * negative, positive, negative

    def forward(self, images01: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> HeadOutput:
        """Apply the VR views, encode them in one batched call, score, fuse, add the feature head."""
        pos_feat, neg_feat = self.encode_views(images01, encode)
        sentences, positive, negative = self.sentence_logits(pos_feat, neg_feat)
        feature = self.feature_logits(pos_feat)
        fused = sentences if feature is None else self.sentence_scale * sentences + feature
        return HeadOutput(fused, positive, negative, pos_feat, neg_feat, sentences, feature)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Copy of the learned tensors (for keeping the best epoch)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items() if not k.startswith(("bank_", "owner_"))}

"""Visual reprogramming (VR) modules, applied to [0,1] pixels before normalisation.

- ``padding`` (the reference): shrink the image to an inner square and learn a pattern
  on the frame around it, ``sigmoid(delta) * frame_mask``; delta starts at zero.
- ``full``: a bounded additive pattern over the whole image, ``x + eps * tanh(delta)``.
- ``mask``: a small conv net predicts a per-sample mask that gates a shared pattern.
All work for any square input size.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from biomedvr_cli.method.config import VR_KINDS


def inner_size(image_size: int, frame: int | None) -> int:
    """Side of the image inside the frame: 6/7 of the input by default (192 of 224)."""
    if frame is None:
        return max(1, round(image_size * 6 / 7))
    if not 0 <= 2 * frame < image_size:
        raise ValueError(f"frame width {frame} does not fit a {image_size}px input")
    return image_size - 2 * frame


class PaddingVR(nn.Module):
    """Resize into the centre and learn the surrounding frame."""

    def __init__(self, image_size: int, frame: int | None = None) -> None:
        super().__init__()
        self.image_size = image_size
        self.inner = inner_size(image_size, frame)
        self.delta = nn.Parameter(torch.zeros(3, image_size, image_size))
        mask = torch.ones(1, image_size, image_size)
        lo = (image_size - self.inner) // 2
        mask[:, lo : lo + self.inner, lo : lo + self.inner] = 0
        self.register_buffer("frame_mask", mask, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        inner = F.interpolate(images, size=(self.inner, self.inner), mode="bilinear", align_corners=False, antialias=True)
        lo = (self.image_size - self.inner) // 2
        hi = self.image_size - self.inner - lo
        padded = F.pad(inner, (lo, hi, lo, hi))
        return padded + torch.sigmoid(self.delta) * self.frame_mask

    def is_identity(self) -> bool:
        """Never: the image is always shrunk into the frame, trained or not."""
        return False


class FullVR(nn.Module):
    """Additive, bounded pattern over the whole image, clamped to [0,1]."""

    def __init__(self, image_size: int, eps: float = 0.25) -> None:
        super().__init__()
        self.eps = eps
        self.delta = nn.Parameter(torch.zeros(3, image_size, image_size))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images + self.eps * torch.tanh(self.delta)).clamp(0.0, 1.0)

    def is_identity(self) -> bool:
        """True while the pattern is all zero: then the view is the image itself ([0,1] pixels)."""
        return not bool(torch.count_nonzero(self.delta.detach()))


class MaskVR(nn.Module):
    """Sample-specific mask (small conv net) multiplying a shared bounded pattern."""

    def __init__(self, image_size: int, eps: float = 0.25, hidden: int = 8) -> None:
        super().__init__()
        self.eps = eps
        self.delta = nn.Parameter(torch.zeros(3, image_size, image_size))
        self.mask_net = nn.Sequential(
            nn.Conv2d(3, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, 3, 3, padding=1),
        )
        # Start as a plain full-image pattern (mask 0.5 everywhere), then specialise.
        nn.init.zeros_(self.mask_net[-1].weight)
        nn.init.zeros_(self.mask_net[-1].bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # The mask is predicted at half resolution: four times cheaper, and masks are smooth anyway.
        small = F.avg_pool2d(images, 2) if images.shape[-1] >= 32 else images
        mask = torch.sigmoid(self.mask_net(small))
        if mask.shape[-1] != images.shape[-1]:
            mask = F.interpolate(mask, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return (images + self.eps * mask * torch.tanh(self.delta)).clamp(0.0, 1.0)

    def is_identity(self) -> bool:
        """True while the shared pattern is all zero (whatever the mask, it multiplies zero)."""
        return not bool(torch.count_nonzero(self.delta.detach()))


def make_vr(kind: str, image_size: int, *, frame: int | None = None, eps: float = 0.25) -> nn.Module:
    """Build a VR module by name."""
    if kind == "padding":
        return PaddingVR(image_size, frame)
    if kind == "full":
        return FullVR(image_size, eps)
    if kind == "mask":
        return MaskVR(image_size, eps)
    raise ValueError(f"unknown VR kind {kind!r}; choose from {VR_KINDS}")

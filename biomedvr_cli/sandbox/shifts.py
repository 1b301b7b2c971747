"""Domain shifts that act on pixels: stain tint, blur, noise, contrast.

A shift is applied to float images [N, H, W, 3] in [0, 1]. It models a different lab or
scanner: pretraining never sees it, so the frozen model's zero-shot suffers and input-space
reprogramming has something real to undo.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

SHIFTS = ("none", "stain", "blur", "noise", "all")

# A stain change: rotate hues around the grey axis and tint towards blue-purple (data).
STAIN_HUE_DEGREES = 40.0  # v1: 55; v2 calibrated to keep shifted zero-shot in its band (docs/sandbox.md)
STAIN_TINT = np.array([0.86, 0.95, 1.12], np.float32)
BLUR_SIGMA = 1.3  # pixels at 64 px
NOISE_STD = 0.04
CONTRAST = 0.8  # v1: 0.75


def _hue_rotation(degrees: float) -> np.ndarray:
    """RGB matrix rotating hue by ``degrees`` around the (1,1,1) axis."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    k = 1.0 / 3.0
    sq = np.sqrt(k)
    return np.array(
        [
            [c + (1 - c) * k, k * (1 - c) - sq * s, k * (1 - c) + sq * s],
            [k * (1 - c) + sq * s, c + k * (1 - c), k * (1 - c) - sq * s],
            [k * (1 - c) - sq * s, k * (1 - c) + sq * s, c + k * (1 - c)],
        ],
        np.float32,
    )


def apply_shift(images: np.ndarray, shift: str, rng: np.random.Generator) -> np.ndarray:
    """Apply a named shift (``none``, ``stain``, ``blur``, ``noise`` or ``all``)."""
    if shift not in SHIFTS:
        raise ValueError(f"unknown shift {shift!r}; choose one of {', '.join(SHIFTS)}")
    if shift == "none":
        return images
    out = images.astype(np.float32, copy=True)
    scale = out.shape[1] / 64.0
    if shift in ("stain", "all"):
        m = _hue_rotation(STAIN_HUE_DEGREES)
        out = out @ m.T * STAIN_TINT
        out = (out - 0.5) * CONTRAST + 0.5 + 0.03
    if shift in ("blur", "all"):
        out = gaussian_filter(out, sigma=(0, BLUR_SIGMA * scale, BLUR_SIGMA * scale, 0), mode="nearest")
    if shift in ("noise", "all"):
        out = out + rng.normal(0, NOISE_STD, out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0)

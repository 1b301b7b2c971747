"""Framed and letterboxed images in pretraining, as real image-text data holds them.

Web images come with borders, mattes and letterboxing (and a longest-side resize, such as
open_clip's ``resize_mode="longest"``, pads to a square with a constant fill), so CLIP-like
models learn that a constant frame says nothing about the content. A sandbox model that never saw a frame treats the
padding start of AR and AttrVR (the image shrunk into a grey frame) as a different world
and falls to chance; these frames give it the invariance real models have.
"""

from __future__ import annotations

import numpy as np


def add_frames(
    images: np.ndarray, rng: np.random.Generator, *, probability: float, max_fraction: float, n_pairs: int = 0
) -> np.ndarray:
    """Shrink a random share of images [B,S,S,3] into a constant-colour frame; returns a new array.

    Each framed image is resized to fit inside the frame, whose width on each framed side is
    up to ``max_fraction`` of the side; the frame covers all four sides (a matte, aspect kept)
    or only two (a letterbox: the image is squashed along that axis, by up to 30 %). The colour is uniform over RGB, so grey, black and
    white frames all occur. The first ``2 * n_pairs`` images are hard-negative pairs and
    share their frame, so a pair still differs only in its attribute.
    """
    import torch
    import torch.nn.functional as F

    B, S = images.shape[0], images.shape[1]
    n_draws = B - n_pairs
    framed = rng.random(n_draws) < probability
    width = np.round(rng.uniform(0.03, max_fraction, n_draws) * S).astype(np.int64)
    sides = rng.integers(0, 3, n_draws)  # 0: all four, 1: top and bottom, 2: left and right
    colour = rng.random((n_draws, 3)).astype(np.float32)
    # One draw per pair, repeated for both of its images, then one per single image.
    index = np.concatenate([np.repeat(np.arange(n_pairs), 2), np.arange(n_pairs, n_draws)])
    out = images.copy()
    for b in np.flatnonzero(framed[index]):
        d = index[b]
        w = int(width[d])
        top = w if sides[d] in (0, 1) else 0
        left = w if sides[d] in (0, 2) else 0
        h_in, w_in = S - 2 * top, S - 2 * left
        x = torch.from_numpy(images[b]).permute(2, 0, 1)[None]
        inner = F.interpolate(x, size=(h_in, w_in), mode="bilinear", align_corners=False, antialias=True)
        canvas = np.broadcast_to(colour[d], (S, S, 3)).copy()
        canvas[top : top + h_in, left : left + w_in] = inner[0].permute(1, 2, 0).numpy()
        out[b] = canvas
    return out

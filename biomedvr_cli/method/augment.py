"""Augmentation on image tensors: random resized crops and flips for a whole batch at once.

Few-shot images are decoded once and kept as tensors, so augmentation must run on
tensors; one ``affine_grid``/``grid_sample`` call crops, rescales and flips every image
of the batch with its own box.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_resized_crop(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> torch.Tensor:
    """Crop a random box from each image ([N,3,S,S] in [0,1]) and resize it back to S."""
    n = images.shape[0]
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    # Box centres in normalised [-1, 1] coordinates, keeping the box inside the image.
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    sx = width.clone()
    if flip:
        sx = torch.where(torch.rand(n, generator=generator) < 0.5, -sx, sx)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = height
    theta[:, 1, 2] = cy
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

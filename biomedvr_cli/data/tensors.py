"""Decoding a list of files once into a compact uint8 tensor for the frozen backbone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from biomedvr_cli.data.decode import DecodeOptions, InvalidImageError, decode_image
from biomedvr_cli.errors import UsageError


# Above this aspect ratio the centre square is cut out before resizing (bounded memory).
THIN_RATIO = 4


@dataclass
class DecodedBatch:
    """Images that decoded (uint8, ``[N, 3, size, size]``), which inputs they are, and the failures.

    ``kept[i]`` is the index in the input list of ``images[i]``; ``failures`` holds
    ``(path, reason)`` for the terminal only, never to be persisted.
    """

    images: torch.Tensor
    kept: list[int] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` (bicubic; Pillow antialiases when shrinking), then a centre crop.

    The arithmetic follows torchvision's ``Resize(size)`` + ``CenterCrop(size)``, which
    open_clip's preprocessing uses, so the pixels match what the backbone was trained on.
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if long > THIN_RATIO * short:
        # Resizing first would allocate size x (size * long / short) pixels: unbounded for a
        # 1 x 20,000,000 strip. The centre square is all the crop keeps, so cut it out first.
        lo = (long - short) // 2
        box = (lo, 0, lo + short, height) if width > height else (0, lo, width, lo + short)
        image = image.crop(box)
        width, height = image.size
        short = long = min(width, height)
    if short != size:
        new_long = int(size * long / short)
        new_size = (size, new_long) if width <= height else (new_long, size)
        image = image.resize(new_size, Image.Resampling.BICUBIC)
        width, height = image.size
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def _decode_one(path: Path, size: int, options: DecodeOptions) -> np.ndarray | str:
    """``HWC`` uint8 pixels, or the reason the file could not be used."""
    try:
        image = decode_image(path, options)
    except InvalidImageError as exc:
        return exc.one_line()
    return np.array(resize_and_crop(image, size), dtype=np.uint8)  # a writable copy for torch.from_numpy


def decode_to_tensors(
    paths: Sequence[Path],
    size: int,
    options: DecodeOptions = DecodeOptions(),
    *,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> DecodedBatch:
    """Decode each file once to ``size x size`` RGB; failures are collected, not raised.

    ``workers > 0`` decodes in a thread pool (Pillow and numpy release the GIL); the output
    order always follows ``paths``. ``progress``, if given, is called with the number of
    files done after each one.
    """
    if size < 1:
        raise UsageError(f"image size must be positive, got {size}", "use the backbone's input size, e.g. 224")
    if workers < 0:
        raise UsageError(f"workers must be 0 or more, got {workers}", "pass 0 to decode in this thread")
    paths = list(paths)
    images = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    kept: list[int] = []
    failures: list[tuple[Path, str]] = []

    def store(index: int, result: np.ndarray | str) -> None:
        if isinstance(result, str):
            failures.append((paths[index], result))
        else:
            images[len(kept)] = torch.from_numpy(result).permute(2, 0, 1)
            kept.append(index)
        if progress is not None:
            progress(index + 1)

    if workers > 0 and len(paths) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for index, result in enumerate(pool.map(lambda p: _decode_one(p, size, options), paths)):
                store(index, result)
    else:
        for index, path in enumerate(paths):
            store(index, _decode_one(path, size, options))
    # Failures leave unused rows at the end; drop them without keeping both copies around.
    return DecodedBatch(images=images[: len(kept)].clone() if failures else images, kept=kept, failures=failures)

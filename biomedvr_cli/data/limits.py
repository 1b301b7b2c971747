"""What every decoder shares: the decode options, the per-file error and its wording.

Kept apart from ``decode`` and ``dicom`` so that both can use them without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from biomedvr_cli.errors import InvalidInputError, UsageError


class InvalidImageError(InvalidInputError):
    """One image file cannot be used: empty, truncated, corrupt, too large, or undecodable."""


@dataclass(frozen=True)
class DecodeOptions:
    """How images are decoded.

    ``max_pixels`` refuses larger images (width x height, per frame). ``window`` is a DICOM
    (center, width) that overrides the file's own VOI LUT / window for greyscale DICOM.
    """

    max_pixels: int = 64_000_000
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise UsageError("the pixel cap must be at least 1", "pass a positive number of pixels")
        if self.window is not None and not self.window[1] > 0:
            raise UsageError("the DICOM window width must be positive", "pass --window CENTER,WIDTH, e.g. 40,400")


def parse_window(text: str) -> tuple[float, float]:
    """Parse ``"CENTER,WIDTH"`` (e.g. ``"40,400"``) into a window for :class:`DecodeOptions`."""
    parts = text.replace(";", ",").split(",")
    try:
        center, width = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"bad window '{text[:40]}'", "write it as CENTER,WIDTH, e.g. --window 40,400") from None
    if not width > 0:
        raise UsageError(f"bad window '{text[:40]}': the width must be positive", "e.g. --window 40,400")
    return center, width


def too_large(name: str, width: int, height: int, options: DecodeOptions) -> InvalidImageError:
    """The error for an image above the pixel cap."""
    return InvalidImageError(
        f"{name}: {width}x{height} pixels exceeds the cap of {options.max_pixels:,} pixels "
        "(possible decompression bomb)",
        "downscale the image, or raise --max-pixels if the file is trusted",
    )


def safe_reason(exc: BaseException, path: Path) -> str:
    """A library's error text with the folder part of ``path`` removed, kept short."""
    text = str(exc) or type(exc).__name__
    for variant in (str(path), str(path.resolve()) if path.exists() else ""):
        if variant:
            text = text.replace(variant, path.name)
    text = " ".join(text.split())  # a library's message may run over several lines: keep it whole, in one
    return (text if len(text) <= 200 else text[:199] + "…") if text else type(exc).__name__

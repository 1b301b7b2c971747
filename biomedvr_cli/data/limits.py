"""What every decoder shares: the decode options, the per-file error and its wording, and
the sizes that compressed frames state in their own headers (read before any decoder
allocates them, so that the pixel cap holds for them too).

Kept apart from ``decode`` and ``dicom`` so that both can use them without importing
each other.
"""

from __future__ import annotations

import contextlib
import math
import struct
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from biomedvr_cli.errors import InvalidInputError, UsageError


# Pillow's decompression-bomb limit is one global; whoever changes it for a while holds this.
PILLOW_LIMIT_LOCK = threading.Lock()


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
        if isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int):
            raise UsageError(f"the pixel cap must be a whole number, got {self.max_pixels!r}",
                             "pass a positive number of pixels, e.g. 64000000")
        if self.max_pixels < 1:
            raise UsageError("the pixel cap must be at least 1", "pass a positive number of pixels")
        problem = window_problem(*self.window) if self.window is not None else None
        if problem:
            raise UsageError(f"bad DICOM window {self.window}: {problem}", "pass --window CENTER,WIDTH, e.g. 40,400")


def parse_window(text: str) -> tuple[float, float]:
    """Parse ``"CENTER,WIDTH"`` (e.g. ``"40,400"``) into a window for :class:`DecodeOptions`."""
    parts = text.replace(";", ",").split(",")
    try:
        center, width = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"bad window '{text[:40]}'", "write it as CENTER,WIDTH, e.g. --window 40,400") from None
    problem = window_problem(center, width)
    if problem:
        raise UsageError(f"bad window '{text[:40]}': {problem}", "e.g. --window 40,400")
    return center, width


# Far beyond any pixel value, and small enough that float32 arithmetic on it stays finite.
_WINDOW_BOUND = 1e30


def window_problem(center: float, width: float) -> str | None:
    """Why (center, width) cannot window an image, or None.

    NaN or infinity would turn every pixel black or one flat grey (and numpy warns on the
    cast), so they are refused here rather than giving a blank image a confident answer.
    """
    try:
        values = float(center), float(width)
    except (TypeError, ValueError):  # DecodeOptions(window=...) from Python may hold anything
        values = math.nan, math.nan
    if not all(math.isfinite(v) and abs(v) <= _WINDOW_BOUND for v in values):
        return "the center and width must be finite numbers"
    if not values[1] > 0:
        return "the width must be positive"
    return None


# JPEG start-of-frame markers (baseline .. lossless, arithmetic, and JPEG-LS's SOF55).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})


def jpeg_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG / JPEG-LS frame header, walking the markers as a decoder does."""
    if frame[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(frame) and frame[pos] == 0xFF:
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
        elif marker in _SOF_MARKERS:
            if pos + 9 > len(frame):
                return None
            height, width = struct.unpack(">HH", frame[pos + 5:pos + 9])  # after length and precision
            return width, height
        elif marker == 0xDA:  # scan data before any frame header
            return None
        else:
            pos += 2 + struct.unpack(">H", frame[pos + 2:pos + 4])[0]
    return None


def j2k_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG 2000 codestream's SIZ segment (also inside a JP2 wrapper)."""
    at = frame.find(b"\xff\x4f\xff\x51", 0, 2**20)  # SOC then SIZ
    if at < 0 or at + 24 > len(frame):
        return None
    x, y, x0, y0 = struct.unpack(">4I", frame[at + 8:at + 24])  # after Lsiz and Rsiz
    return x - x0, y - y0


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


@contextlib.contextmanager
def pillow_allows(pixels: int) -> Iterator[None]:
    """Let Pillow decode an image of ``pixels`` that our own cap has already allowed (a DICOM frame
    decoded by pydicom's Pillow plugin). Pillow refuses images above twice its global limit
    (about 179 million pixels) whatever ``--max-pixels`` says, so for an image above its default
    limit the limit is raised to ``pixels`` while it decodes. That is done under
    :data:`PILLOW_LIMIT_LOCK`, which opening any image also holds while it sets the limit, so no
    other thread can put the default back meanwhile; smaller images change nothing."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS  # read without the lock: it may be another thread's passing value
    if limit is None or (limit >= _PILLOW_DEFAULT_LIMIT and pixels <= _PILLOW_DEFAULT_LIMIT):
        yield
        return
    with PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None if previous is None else max(previous, pixels)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


# Pillow's own limit as it ships (1024 * 1024 * 1024 // 4 // 3): above it a decode may meet an open()
# that has just put this default back, so it always takes the lock.
_PILLOW_DEFAULT_LIMIT = 89_478_485

"""Mapping high-bit-depth pixel arrays to 8 bits without clipping."""

from __future__ import annotations

import numpy as np


def minmax_to_uint8(values: np.ndarray) -> np.ndarray:
    """Linearly map the array's own minimum to 0 and maximum to 255.

    Nothing is clipped: every distinct level of a 12- or 16-bit image keeps its order.
    Non-finite values in float images do not count towards the range: NaN and -inf become 0,
    +inf 255 (above every finite value, as a saturated pixel). A constant image maps its value
    over the dtype's range (integers) or to 0.
    """
    data = np.asarray(values)
    as_float = data.astype(np.float32, copy=False)
    finite = np.isfinite(as_float)
    all_finite = bool(finite.all())
    if not all_finite and not finite.any():
        return np.where(np.isposinf(as_float), 255, 0).astype(np.uint8)
    valid = as_float if all_finite else as_float[finite]
    low, high = float(valid.min()), float(valid.max())
    if high <= low:
        flat = np.full(data.shape, _constant_level(data.dtype, low), dtype=np.uint8)
        if not all_finite:  # the same rule for non-finite pixels as in a varied image
            flat[~finite] = 0
            flat[np.isposinf(as_float)] = 255
        return flat
    scaled = (as_float - low) * np.float32(255.0 / (high - low))
    if not all_finite:
        scaled[~finite] = 0.0
        scaled[np.isposinf(as_float)] = 255.0
    return np.rint(scaled).astype(np.uint8)


def range_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map a known value range (e.g. 0 .. 2**bits - 1) linearly to 0..255."""
    span = max(float(high) - float(low), 1e-12)
    scaled = (np.asarray(values, dtype=np.float32) - np.float32(low)) * np.float32(255.0 / span)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def _constant_level(dtype: np.dtype, value: float) -> int:
    """Grey level for a flat image: its place in the integer dtype's range, else black."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return round((value - info.min) * 255.0 / (info.max - info.min))
    return 0

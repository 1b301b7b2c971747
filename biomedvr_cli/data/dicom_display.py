"""DICOM pixels to what a screen shows: the greyscale transforms (modality LUT, then the VOI
LUT or window) and colour passed through, as 8-bit RGB. The rules are those listed in
``dicom``'s docstring; this module only applies them to pixels already decoded there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi

from biomedvr_cli.data.limits import DecodeOptions, window_problem
from biomedvr_cli.data.scaling import minmax_to_uint8, range_to_uint8

COLOUR_PHOTOMETRICS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422"})


def display_rgb(pixels: np.ndarray, ds: Dataset, index: int, options: DecodeOptions) -> np.ndarray:
    """Decoded pixels to contiguous ``HxWx3`` uint8, by photometric interpretation."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, ds)
        rgb = rgb if rgb.dtype == np.uint8 else range_to_uint8(rgb, 0, np.iinfo(rgb.dtype).max)
    elif pixels.ndim == 3 or photometric in COLOUR_PHOTOMETRICS:
        rgb = _colour_to_uint8(pixels, ds)
    else:
        grey = _grey_to_uint8(pixels, ds, index, options)
        if photometric == "MONOCHROME1":  # 0 means white in MONOCHROME1
            grey = 255 - grey
        rgb = np.repeat(grey[..., None], 3, axis=-1)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _grey_to_uint8(pixels: np.ndarray, ds: Dataset, index: int, options: DecodeOptions) -> np.ndarray:
    values = _modality(pixels, ds, index)
    if options.window is not None:
        return _window(values, *options.window, "LINEAR")
    if ds.get("VOILUTSequence"):
        return _voi_lut(values, ds)
    window = _file_window(ds, index)
    if window is not None:
        return _window(values, *window)
    return minmax_to_uint8(values)


def _functional_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """First item of ``sequence`` for this frame in an enhanced multi-frame file, if any."""
    places = (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0))
    for groups_keyword, position in places:
        groups = ds.get(groups_keyword)
        if groups and len(groups) > position:
            items = groups[position].get(sequence)
            if items:
                return items[0]
    return None


def _first_number(value: Any) -> float:
    """A DS value, or the first of a multi-valued one."""
    if isinstance(value, (MultiValue, list, tuple)):
        value = value[0]
    return float(value)


def _modality(pixels: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    """Stored values to modality values (e.g. Hounsfield units for CT)."""
    if ds.get("ModalityLUTSequence"):
        return apply_modality_lut(pixels, ds).astype(np.float32)
    source: Dataset | None = ds if "RescaleSlope" in ds or "RescaleIntercept" in ds else None
    if source is None:
        source = _functional_item(ds, index, "PixelValueTransformationSequence")
    values = pixels.astype(np.float32)
    if source is None:
        return values
    slope = _first_number(source.get("RescaleSlope", 1.0) or 1.0)
    intercept = _first_number(source.get("RescaleIntercept", 0.0) or 0.0)
    if not (math.isfinite(slope) and math.isfinite(intercept)):  # NaN would make a blank image, not an error
        raise ValueError(f"Rescale Slope/Intercept {slope}/{intercept} is not a finite number")
    return values * np.float32(slope) + np.float32(intercept)


def _file_window(ds: Dataset, index: int) -> tuple[float, float, str] | None:
    """The file's first Window Center/Width and VOI LUT Function, if it has one."""
    source: Dataset | None = ds if "WindowCenter" in ds and "WindowWidth" in ds else None
    if source is None:
        source = _functional_item(ds, index, "FrameVOILUTSequence")
    if source is None or source.get("WindowCenter") is None or source.get("WindowWidth") is None:
        return None
    try:
        center, width = _first_number(source.WindowCenter), _first_number(source.WindowWidth)
    except (TypeError, ValueError, IndexError):
        return None
    if window_problem(center, width):  # NaN, infinite or non-positive: as if the file had no window
        return None
    function = str(source.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    return center, width, function


def _window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing to 0..255 (values outside the window saturate)."""
    if function == "SIGMOID":
        fraction = 0.5 + 0.5 * np.tanh(2.0 * (values - center) / width)  # 1 / (1 + exp(-4x)), no overflow
    elif function == "LINEAR_EXACT":
        fraction = (values - center) / width + 0.5
    else:
        # LINEAR: width counts pixel levels, so a width of 1 is a hard threshold.
        span = max(width - 1.0, 1e-6)
        fraction = (values - (center - 0.5)) / span + 0.5
    return np.rint(np.clip(fraction, 0.0, 1.0) * 255.0).astype(np.uint8)


def _voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """The file's first VOI LUT, its output scaled from the table's own range."""
    item = ds.VOILUTSequence[0]
    entries = int(item.LUTDescriptor[0]) or 2**16
    first = int(item.LUTDescriptor[1])
    table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds)  # the LUT itself
    mapped = apply_voi(np.rint(values).astype(np.int64), ds)
    return range_to_uint8(mapped, float(table.min()), float(table.max()))


def _colour_to_uint8(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    bits = int(ds.get("BitsStored") or pixels.dtype.itemsize * 8)
    return range_to_uint8(pixels, 0, 2**bits - 1)

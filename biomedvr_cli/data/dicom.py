"""DICOM files to 8-bit RGB through pydicom.

Rules:
- Pixel cap: Rows x Columns is checked from the header before pixel data is read.
- Multi-frame files (cine loops, enhanced CT/MR, tomosynthesis) give one image: the
  middle frame, index ``NumberOfFrames // 2`` counted from 0. Only that frame is decoded.
- Greyscale: the modality LUT first (Modality LUT Sequence, else Rescale Slope/Intercept,
  also read from the enhanced-multi-frame functional groups), then the VOI transform:
  an explicit ``DecodeOptions.window`` wins; else the file's VOI LUT Sequence; else its
  first Window Center/Width (LINEAR, LINEAR_EXACT or SIGMOID as the file says); else the
  image's own minimum..maximum (no clipping). MONOCHROME1 is inverted so that higher
  values are brighter, as with MONOCHROME2.
- Colour: RGB and YBR are converted to RGB by pydicom and passed through (scaled from
  Bits Stored when above 8 bits); PALETTE COLOR goes through its palette. The window
  override does not apply to colour.
- A compressed transfer syntax with no decoder installed is refused with a message that
  names the plugin to install.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from biomedvr_cli.data.files import has_dicom_magic
from biomedvr_cli.data.limits import DecodeOptions, InvalidImageError, safe_reason, too_large
from biomedvr_cli.data.scaling import minmax_to_uint8, range_to_uint8

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Elements nearly every DICOM object carries; one of them tells a header-only DICOM file
# (no preamble) from a file of another kind that merely has a .dcm name.
_HEADER_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "Rows")
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422"})

# pip packages that add decoders, by transfer syntax family (UID prefix or UID).
_JPEG_PLUGINS = "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)"
_PLUGINS: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.1.2.4.80", "pyjpegls (or pylibjpeg pylibjpeg-libjpeg, or python-gdcm)"),  # JPEG-LS lossless
    ("1.2.840.10008.1.2.4.81", "pyjpegls (or pylibjpeg pylibjpeg-libjpeg, or python-gdcm)"),  # JPEG-LS near-lossless
    ("1.2.840.10008.1.2.4.9", "pylibjpeg pylibjpeg-openjpeg (or python-gdcm)"),  # JPEG 2000
    ("1.2.840.10008.1.2.4.20", "pylibjpeg pylibjpeg-openjpeg"),  # HTJ2K
    ("1.2.840.10008.1.2.4.5", _JPEG_PLUGINS),  # JPEG baseline / extended
    ("1.2.840.10008.1.2.4.57", _JPEG_PLUGINS),  # JPEG lossless
    ("1.2.840.10008.1.2.4.70", _JPEG_PLUGINS),  # JPEG lossless SV1
    ("1.2.840.10008.1.2.5", "pylibjpeg pylibjpeg-rle"),  # RLE
)
# Deferring large elements keeps the header read cheap; pixel data is read only when needed.
_DEFER = "256 KB"


def decode_dicom(path: Path, options: DecodeOptions = DecodeOptions()) -> Image.Image:
    """Decode a DICOM file to 8-bit RGB following the module's rules, or raise InvalidImageError."""
    name = path.name
    ds = _read(path)
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows * columns <= 0:
        raise InvalidImageError(f"{name}: DICOM image has no Rows/Columns")
    if rows * columns > options.max_pixels:
        raise too_large(name, columns, rows, options)
    frames = _number_of_frames(ds)
    index = frames // 2
    pixels = _frame(ds, path, index if frames > 1 else None)
    try:
        rgb = _display(pixels, ds, index, options)
    except Exception as exc:  # malformed LUTs or attributes surface as many exception types
        raise InvalidImageError(f"{name}: DICOM display transform failed ({safe_reason(exc, path)})") from None
    return Image.fromarray(rgb)  # HxWx3 uint8 is RGB


def _display(pixels: np.ndarray, ds: Dataset, index: int, options: DecodeOptions) -> np.ndarray:
    """Decoded pixels to contiguous ``HxWx3`` uint8, by photometric interpretation."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, ds)
        rgb = rgb if rgb.dtype == np.uint8 else range_to_uint8(rgb, 0, np.iinfo(rgb.dtype).max)
    elif pixels.ndim == 3 or photometric in _COLOUR:
        rgb = _colour_to_uint8(pixels, ds)
    else:
        grey = _grey_to_uint8(pixels, ds, index, options)
        if photometric == "MONOCHROME1":  # 0 means white in MONOCHROME1
            grey = 255 - grey
        rgb = np.repeat(grey[..., None], 3, axis=-1)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _read(path: Path) -> Dataset:
    name = path.name
    try:
        # force: files without the 128-byte preamble (older exports, some PACS dumps) still read
        ds = pydicom.dcmread(path, force=True, defer_size=_DEFER)
    except Exception as exc:  # pydicom raises InvalidDicomError, EOFError, struct/ValueError ...
        raise InvalidImageError(f"{name}: not a readable DICOM file ({safe_reason(exc, path)})") from None
    if not has_dicom_magic(path) and not any(keyword in ds for keyword in (*_PIXEL_KEYWORDS, *_HEADER_KEYWORDS)):
        # force=True reads any bytes as some dataset; without the marker or a single familiar
        # element this is another kind of file with a .dcm name, not an image-less DICOM.
        raise InvalidImageError(
            f"{name}: not a DICOM file (no DICM marker and no DICOM header)",
            "pass DICOM files, or give the file the extension of its real format (.png, .jpg, ...)",
        )
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise InvalidImageError(
            f"{name}: DICOM file holds no image (no Pixel Data: a truncated file, or e.g. a report or structure set)",
            "pass image DICOM files only",
        )
    meta = ds.file_meta
    if "TransferSyntaxUID" not in meta:
        # Read without file meta: the encoding pydicom found tells us the transfer syntax.
        implicit, little = ds.original_encoding
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    return ds


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def plugin_hint(tsyntax: UID) -> str:
    """The pip packages that decode ``tsyntax``."""
    for prefix, plugins in _PLUGINS:
        if str(tsyntax).startswith(prefix):
            return plugins
    return "python-gdcm"


def _decoder_error(name: str, tsyntax: UID) -> InvalidImageError:
    plugins = plugin_hint(tsyntax)
    return InvalidImageError(
        f"{name}: DICOM compressed as {tsyntax.name}, and no installed decoder can read it; install {plugins}",
        f"pip install {plugins.split(' (')[0]}",
    )


def _frame(ds: Dataset, path: Path, index: int | None) -> np.ndarray:
    """The pixel array of one frame (or the only one), colour already converted to RGB."""
    name = path.name
    tsyntax = UID(ds.file_meta.TransferSyntaxUID)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise InvalidImageError(
            f"{name}: DICOM transfer syntax {tsyntax.name} is not supported",
            "export the study uncompressed or as JPEG / JPEG 2000",
        ) from None
    if not decoder.is_available:
        raise _decoder_error(name, tsyntax)
    try:
        return pixel_array(ds, index=index)
    except Exception as exc:
        if tsyntax.is_compressed and tsyntax.is_encapsulated:
            # e.g. 12-bit JPEG, which Pillow's plugin cannot decode
            detail = safe_reason(exc, path)
            if "plugin" in detail or "decod" in detail.lower():
                raise _decoder_error(name, tsyntax) from None
        raise InvalidImageError(f"{name}: DICOM pixel data cannot be decoded ({safe_reason(exc, path)})") from None


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
    if not width > 0:
        return None
    function = str(source.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    return center, width, function


def _window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing to 0..255 (values outside the window saturate)."""
    if function == "SIGMOID":
        fraction = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
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

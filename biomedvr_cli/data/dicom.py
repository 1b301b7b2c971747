"""DICOM files to 8-bit RGB through pydicom.

Rules:
- Pixel cap: Rows x Columns is checked from the header before pixel data is read (or inflated).
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
- Header against pixels, before decoding (Samples per Pixel, native length, a JPEG or
  JPEG 2000 frame's own size), then the decoded shape: a mismatch is "unreadable DICOM".
- Deflate: the header is inflated first (at most 16 MiB) and capped counting all frames
  (the file is inflated whole); the rest only up to the declared size plus 1 MiB.
"""

from __future__ import annotations

import zlib
from pathlib import Path
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import get_frame
from pydicom.filebase import DicomBytesIO
# The same file-meta reader dcmread uses, so that our "is it deflated?" matches pydicom's.
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.pixels import get_decoder, pixel_array
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from biomedvr_cli.data.dicom_display import COLOUR_PHOTOMETRICS, display_rgb
from biomedvr_cli.data.files import has_dicom_magic
from biomedvr_cli.data.limits import DecodeOptions, InvalidImageError, j2k_size, jpeg_size, pillow_allows, safe_reason
from biomedvr_cli.data.limits import too_large

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Elements nearly every DICOM object carries; one of them tells a header-only DICOM file
# (no preamble) from a file of another kind that merely has a .dcm name.
_HEADER_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "Rows")
_ONE_SAMPLE = frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"})
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # Float, Double Float, Pixel Data
# Deflate bounds: the most header an image needs; room for elements after Pixel Data.
_HEADER_BYTES = 16 * 2**20
_TRAILER_BYTES = 2**20
# Encapsulated syntaxes whose frames state their own size.
_JPEG_SYNTAXES = frozenset(f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70, 80, 81))
_J2K_SYNTAXES = frozenset(f"1.2.840.10008.1.2.4.{n}" for n in (90, 91, 92, 93, 201, 202, 203))

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
    ds = _read(path, options)
    rows, columns = _size(ds, name, options)
    samples = _check_samples(ds, name)
    frames = _number_of_frames(ds)
    index = frames // 2
    pixels = _frame(ds, path, index if frames > 1 else None)
    expected = (rows, columns) if samples == 1 else (rows, columns, samples)
    if pixels.shape != expected:  # the last guard: what reaches the display must be one frame
        raise _unreadable(name, f"its pixels decode to shape {pixels.shape}, not the header's {expected}")
    try:
        rgb = display_rgb(pixels, ds, index, options)
    except Exception as exc:  # malformed LUTs or attributes surface as many exception types
        raise InvalidImageError(f"{name}: DICOM display transform failed ({safe_reason(exc, path)})",
                                "export it again from the PACS or viewer it came from, or pass --window") from None
    if rgb.shape != (rows, columns, 3):
        raise _unreadable(name, f"its display image has shape {rgb.shape}, not {rows}x{columns} RGB")
    return Image.fromarray(rgb)  # HxWx3 uint8 is RGB


def _unreadable(name: str, detail: str) -> InvalidImageError:
    return InvalidImageError(f"{name}: unreadable DICOM: {detail}", "export it again from the PACS or viewer it came from")


def _header_int(ds: Dataset, keyword: str) -> int:
    """A whole-number header element; 0 when missing or malformed (a multi-valued Rows, say)."""
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0


def _size(ds: Dataset, name: str, options: DecodeOptions) -> tuple[int, int]:
    """Rows and Columns from the header, within the pixel cap."""
    rows, columns = _header_int(ds, "Rows"), _header_int(ds, "Columns")
    if rows * columns <= 0:
        raise InvalidImageError(f"{name}: DICOM image has no Rows/Columns", "export it again from the PACS or viewer it came from")
    if rows * columns > options.max_pixels:
        raise too_large(name, columns, rows, options)
    return rows, columns


def _check_samples(ds: Dataset, name: str) -> int:
    """Samples per Pixel, refused when it cannot go with the photometric interpretation."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = _header_int(ds, "SamplesPerPixel") or 1  # malformed reads as 1: the shape check still guards
    wanted = 3 if photometric in COLOUR_PHOTOMETRICS else 1 if photometric in _ONE_SAMPLE else samples
    if samples != wanted or samples not in (1, 3):
        raise _unreadable(name, f"Photometric Interpretation {photometric[:20]} with Samples per Pixel {samples}")
    return samples


def _read(path: Path, options: DecodeOptions) -> Dataset:
    name = path.name
    try:
        ds = _parse(path, options)
    except InvalidImageError:
        raise
    except Exception as exc:  # pydicom raises InvalidDicomError, EOFError, struct/ValueError ...
        raise InvalidImageError(f"{name}: not a readable DICOM file ({safe_reason(exc, path)})",
                                "export it again from the PACS or viewer it came from") from None
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


def _parse(path: Path, options: DecodeOptions) -> Dataset:
    with open(path, "rb") as fp:
        # force: files without the 128-byte preamble (older exports, some PACS dumps) still read
        preamble = read_preamble(fp, True)
        meta = _read_file_meta_info(fp)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return pydicom.dcmread(path, force=True, defer_size=_DEFER)
        # dcmread would inflate the whole dataset before any check: a 600 KB file of zeros
        # becomes 600 MB. Inflate it here, bounded by what the header declares.
        compressed = fp.read()
    dataset = read_dataset(DicomBytesIO(_inflate(compressed, path.name, options)), False, True)
    return FileDataset(str(path), dataset, preamble, meta, False, True)


def _inflate(compressed: bytes, name: str, options: DecodeOptions) -> bytes:
    """A deflated dataset, inflated no further than its header says its pixels need."""
    head = zlib.decompressobj(-zlib.MAX_WBITS).decompress(compressed, _HEADER_BYTES)
    at_pixels, header = _header_of(head)
    if at_pixels is None:
        if len(head) >= _HEADER_BYTES:
            raise _unreadable(name, "its Deflate header inflates past 16 MiB (possible decompression bomb)")
        return head  # the whole dataset, and no pixels: refused as "holds no image" later
    rows, columns = _size(header, name, options)
    frames = _number_of_frames(header)
    if rows * columns * frames > options.max_pixels:  # inflated whole, so all frames count
        raise InvalidImageError(f"{name}: Deflate-compressed DICOM of {frames} frames of {columns}x{rows} pixels "
                                f"exceeds the cap of {options.max_pixels:,} pixels (it can only be inflated whole)",
                                "export it uncompressed, or raise --max-pixels if the file is trusted")
    limit = at_pixels + get_expected_length(header, "bytes") + _TRAILER_BYTES
    data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(compressed, limit + 1)
    if len(data) > limit:
        raise _unreadable(name, "its Deflate data inflates past what its header declares (possible decompression bomb)")
    return data


def _header_of(head: bytes) -> tuple[int | None, Dataset]:
    """Where the pixel data starts in inflated bytes (None if not within them), and the header."""
    found: list[bool] = []  # one entry per top-level tag; the last says whether pixel data starts there

    def at_pixels(tag: int, *_: object) -> bool:
        found.append(tag in _PIXEL_TAGS)
        return found[-1]

    fp = DicomBytesIO(head)  # an error here is "not a readable DICOM file", as from dcmread
    header = read_dataset(fp, False, True, stop_when=at_pixels)
    return (fp.tell() if found and found[-1] else None), header


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
        if tsyntax.is_encapsulated:
            _check_frame_size(ds, name, tsyntax, index or 0)
        else:
            _check_stored_length(ds, name)
        with pillow_allows(_header_int(ds, "Rows") * _header_int(ds, "Columns")):  # a JPEG frame decodes in Pillow
            return pixel_array(ds, index=index)
    except InvalidImageError:
        raise
    except Exception as exc:
        if tsyntax.is_compressed and tsyntax.is_encapsulated:
            # e.g. 12-bit JPEG, which Pillow's plugin cannot decode
            detail = safe_reason(exc, path)
            if "plugin" in detail or "decod" in detail.lower():
                raise _decoder_error(name, tsyntax) from None
        raise InvalidImageError(f"{name}: DICOM pixel data cannot be decoded ({safe_reason(exc, path)})",
                                "export it again from the PACS or viewer it came from") from None


def _check_stored_length(ds: Dataset, name: str) -> None:
    """Refuse native Pixel Data a whole frame longer than declared: pydicom would return the extra
    frames, in a shape nothing downstream expects (less is trailing padding, which pydicom drops)."""
    keyword = next(k for k in _PIXEL_KEYWORDS if k in ds)
    element = ds.get_item(keyword, keep_deferred=True)  # its length, without reading a large value
    stored = element.length if isinstance(element, RawDataElement) else len(element.value)
    expected = get_expected_length(ds, "bytes")
    if stored - expected >= max(expected // _number_of_frames(ds), 2):  # 2: an odd length's padding byte
        raise _unreadable(name, f"its Pixel Data holds {stored:,} bytes, but its header declares {expected:,}")


def _check_frame_size(ds: Dataset, name: str, tsyntax: UID, index: int) -> None:
    """A compressed frame's own size must be the header's, checked before the decoder allocates it."""
    reader = jpeg_size if tsyntax in _JPEG_SYNTAXES else j2k_size if tsyntax in _J2K_SYNTAXES else None
    if reader is None:  # RLE: pydicom sizes its output from Rows x Columns itself
        return
    offsets = ds.get("ExtendedOffsetTable"), ds.get("ExtendedOffsetTableLengths")
    frame = get_frame(ds.PixelData, index, number_of_frames=_number_of_frames(ds),
                      extended_offsets=offsets if None not in offsets else None)
    size, header = reader(frame), (_header_int(ds, "Columns"), _header_int(ds, "Rows"))
    if size != header:
        found = f"is {size[0]}x{size[1]} pixels" if size else "has no readable JPEG / JPEG 2000 size"
        raise _unreadable(name, f"its compressed frame {found}; its header says {header[0]}x{header[1]}")

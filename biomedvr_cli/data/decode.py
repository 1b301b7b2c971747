"""Safe decoding of one image file (PNG, JPEG, TIFF, ..., DICOM) to an 8-bit RGB picture.

Rules, in the order they apply:
- The pixel cap (``DecodeOptions.max_pixels``, default 64 megapixels) is checked from the
  header, before any pixel is decoded, so a decompression bomb costs nothing.
- Only common raster formats are opened (PNG, JPEG, TIFF, BMP, GIF, WebP, PPM, JPEG 2000);
  others, such as EPS (which would start Ghostscript), are refused.
- EXIF orientation is applied. A GIF or multi-page TIFF gives its first frame.
- 16-bit and 32-bit greyscale (``I;16``, ``I``, ``F``) is scaled linearly from the image's
  own minimum..maximum to 0..255: nothing is clipped. (Pillow itself reduces 16-bit colour
  PNGs to their high byte, i.e. full-range scaling.)
- Transparency is composited onto black (transparent -> black, half-transparent -> half
  brightness), matching the zero padding of the rest of the pipeline.
- Grey, palette, CMYK, YCbCr and bilevel images are converted to RGB.
- Empty, truncated, corrupt and non-image files raise :class:`InvalidImageError` with the
  reason. Messages name the file, never its folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from biomedvr_cli.data.files import has_dicom_magic
from biomedvr_cli.data.limits import PILLOW_LIMIT_LOCK, DecodeOptions, InvalidImageError, parse_window, safe_reason
from biomedvr_cli.data.limits import too_large
from biomedvr_cli.data.scaling import minmax_to_uint8

__all__ = ["DecodeOptions", "InvalidImageError", "decode_image", "is_dicom", "parse_window", "to_rgb"]

# Pillow format names; JPEG also covers MPO (multi-picture JPEG from cameras).
_PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "DIB", "GIF", "WEBP", "PPM", "JPEG2000")
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})

def is_dicom(path: Path) -> bool:
    """A ``.dcm``/``.dicom`` file, or any file with the DICOM marker."""
    return path.suffix.lower() in _DICOM_SUFFIXES or has_dicom_magic(path)


def decode_image(path: Path, options: DecodeOptions = DecodeOptions()) -> Image.Image:
    """Decode one file to an 8-bit RGB :class:`PIL.Image.Image`, or raise :class:`InvalidImageError`."""
    path = Path(path)
    name = path.name
    if "\x00" in str(path):
        # A NUL (e.g. from a damaged manifest cell) can name no file; the OS layer would raise
        # a bare ValueError. Shown escaped so that it cannot cut a CSV row or a terminal line.
        shown = name.replace("\x00", "\\0")
        raise InvalidImageError(f"{shown}: the path holds a NUL byte", "fix the path (a damaged manifest cell?)")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidImageError(f"{name}: file not found", "check the path; the file may have been moved or deleted") from None
    except OSError as exc:
        raise InvalidImageError(f"{name}: cannot read ({exc.strerror})",
                                "check the file's permissions, or copy it somewhere readable") from None
    if path.is_dir():  # a folder among predict's inputs that held no image file, or a manifest row naming a folder
        raise InvalidImageError(f"{name}: a folder, not an image file (an input folder with no image file in it, "
                                "or a manifest row naming a folder)", "name the image files, or a folder that holds some")
    if not path.is_file():
        raise InvalidImageError(f"{name}: not a file (a pipe, socket or device)", "pass a regular image file")
    if size == 0:
        raise InvalidImageError(f"{name}: empty file (0 bytes)", "copy or export the image again (an interrupted copy?)")
    if is_dicom(path):
        from biomedvr_cli.data.dicom import decode_dicom  # pydicom is imported only when needed

        return decode_dicom(path, options)
    return _decode_with_pillow(path, options)


def _decode_with_pillow(path: Path, options: DecodeOptions) -> Image.Image:
    name = path.name
    image = _open(path, options)
    try:
        width, height = image.size
        if width * height > options.max_pixels:  # Pillow's check already covers this; belt and braces
            raise too_large(name, width, height, options)
        try:
            image.load()
        except Image.DecompressionBombError:
            raise too_large(name, width, height, options) from None
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error ...
            raise InvalidImageError(f"{name}: truncated or corrupt {image.format} ({safe_reason(exc, path)})",
                                    "copy or export the image again from its source") from None
        try:
            oriented = ImageOps.exif_transpose(image)
        except Exception:  # a broken EXIF block should not cost the image; keep it as stored
            oriented = image
        return to_rgb(oriented, name)
    finally:
        image.close()


def _open(path: Path, options: DecodeOptions) -> Image.Image:
    """Open lazily (header only) with Pillow's bomb check set to our cap (a process-wide setting,
    so under PILLOW_LIMIT_LOCK: parallel decodes cannot see each other's value)."""
    name = path.name
    with PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = options.max_pixels
        try:
            return Image.open(path, formats=_PIL_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidImageError(
                f"{name}: larger than the cap of {options.max_pixels:,} pixels (possible decompression bomb)",
                "downscale the image, or raise --max-pixels if the file is trusted",
            ) from None
        except UnidentifiedImageError:
            raise InvalidImageError(
                f"{name}: not an image biomedvr can read",
                "use PNG, JPEG, TIFF, BMP, GIF, WebP, PPM, JPEG 2000 or DICOM",
            ) from None
        except Exception as exc:  # OSError and parser errors from a damaged header
            raise InvalidImageError(f"{name}: unreadable image ({safe_reason(exc, path)})",
                                    "copy or export the image again, or save it as PNG") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, following the rules in this module's docstring."""
    mode = image.mode
    if 0 in image.size:
        raise InvalidImageError(f"{name} has no pixels ({image.width} x {image.height})", "pass a non-empty image")
    try:
        return _converted(image, mode)
    except (ValueError, OSError) as exc:  # a mode Pillow cannot convert (LA premultiplied, ...), or a closed image
        if "closed" in str(exc):
            raise InvalidImageError(f"{name} is a closed PIL image", "pass the image before closing it, "
                                    "or open it again") from None
        raise InvalidImageError(f"{name}: colour mode {mode} is not supported",
                                "save the image as RGB or greyscale") from None


def _converted(image: Image.Image, mode: str) -> Image.Image:
    if mode in _HIGH_DEPTH_MODES:
        grey = minmax_to_uint8(np.asarray(image))
        return Image.fromarray(grey).convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        if mode == "La":  # premultiplied: Pillow converts it only to LA
            image = image.convert("LA")
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    if mode == "1":
        image = image.convert("L")
    return image.convert("RGB")

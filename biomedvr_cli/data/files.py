"""Recognising image files and walking folders the way a data team expects."""

from __future__ import annotations

import os
from pathlib import Path

#: Extensions treated as images without opening the file (compared lower-case).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".dcm"})

# Folders that archive tools or operating systems add and that never hold real data.
_SKIPPED_FOLDERS = frozenset({"__MACOSX"})

_DICOM_PREAMBLE = 128
_DICOM_MAGIC = b"DICM"


def has_dicom_magic(path: Path) -> bool:
    """True when the file carries the DICOM Part 10 marker ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_DICOM_PREAMBLE + len(_DICOM_MAGIC))
    except OSError:
        return False
    return head[_DICOM_PREAMBLE:] == _DICOM_MAGIC


def is_image_file(path: Path) -> bool:
    """True for a known image extension, or for a file with the DICOM marker.

    DICOM files often have no extension at all (``IM000001``), hence the magic check.
    """
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return True
    return has_dicom_magic(path)


def is_hidden(name: str) -> bool:
    """Hidden files and folders (``.DS_Store``, ``._scan.png``, ``.git``) and ``__MACOSX``."""
    return name.startswith(".") or name in _SKIPPED_FOLDERS


def walk_images(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """All image files under ``root`` (recursively, sorted), and what was skipped with why.

    Hidden folders and ``__MACOSX`` are not entered; each is reported once.
    """
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for current, dirs, files in os.walk(root):
        here = Path(current)
        kept_dirs = []
        for name in sorted(dirs):
            if is_hidden(name):
                skipped.append((here / name, "hidden folder"))
            else:
                kept_dirs.append(name)
        dirs[:] = kept_dirs  # os.walk descends only into what is left here, in sorted order
        for name in sorted(files):
            path = here / name
            if is_hidden(name):
                skipped.append((path, "hidden file"))
            elif is_image_file(path):
                images.append(path)
            else:
                skipped.append((path, "not an image file"))
    images.sort()
    return images, skipped

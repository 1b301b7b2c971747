"""Recognising image files and walking folders the way a data team expects."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from biomedvr_cli.errors import InvalidInputError

#: Extensions treated as images without opening the file (compared lower-case).
# Every format the decoder opens (decode._PIL_FORMATS, DICOM), so a folder finds what `predict FILE` reads.
# .jfif / .jpe / .jif are JPEG (the names Windows and old cameras give them).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".jif", ".tif", ".tiff", ".bmp", ".gif",
                              ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".j2k", ".dcm", ".dicom"})

# Folders that archive tools or operating systems add and that never hold real data.
_SKIPPED_FOLDERS = frozenset({"__MACOSX"})

# Caps on files read whole into memory. Class lists, attribute files, task and suite files
# are kilobytes; a manifest at its row cap (manifest.MAX_MANIFEST_ROWS) of long paths is
# well under 128 MiB.
MAX_USER_TEXT_BYTES = 16 * 1024 * 1024
MAX_MANIFEST_BYTES = 128 * 1024 * 1024

_DICOM_PREAMBLE = 128
_DICOM_MAGIC = b"DICM"


def has_dicom_magic(path: Path) -> bool:
    """True when the file carries the DICOM Part 10 marker ``DICM`` at byte 128.

    Only a regular file is read: opened non-blocking and checked on the handle, so a named pipe
    without an extension (``notes``) is passed over instead of waiting for a writer forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):  # ValueError: a NUL byte in the name
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, _DICOM_PREAMBLE + len(_DICOM_MAGIC))
    except OSError:
        return False
    finally:
        os.close(fd)
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


def walk_images(root: Path, identities: dict[Path, tuple[int, int]] | None = None
                ) -> tuple[list[Path], list[tuple[Path, str]]]:
    """All image files under ``root`` (recursively, sorted), and what was skipped with why.

    Hidden folders and ``__MACOSX`` are not entered; each is reported once. Linked folders are
    followed at every depth (as a linked class folder is), each folder once: a link back to a
    folder already walked (a loop) is reported, not entered. ``identities``, when given, receives
    each image's (device, inode) where the listing already holds it (not for a link to a file),
    so that telling files reached twice apart costs no extra system call.
    """
    from biomedvr_cli.atomic import is_own_lock

    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    root_id = _folder_id(Path(root))
    seen = {root_id}
    # A stack, not os.walk: Python 3.11's os.walk recurses once per level, so a tree a thousand
    # folders deep (still a legal path) would fail the whole run.
    stack = [(Path(root), root_id)]
    while stack:
        here, here_id = stack.pop()
        folders, files = _entries(here)
        kept: list[tuple[Path, tuple[int, int] | None]] = []
        for folder in folders:
            folder_id = _folder_id(folder)
            if is_hidden(folder.name):
                skipped.append((folder, "hidden folder"))
            elif folder_id is not None and folder_id in seen:
                skipped.append((folder, "folder already walked (a link loop)"))
            else:
                seen.add(folder_id)
                kept.append((folder, folder_id))
        stack.extend(reversed(kept))  # walked in sorted order
        for path, inode in files:
            if is_hidden(path.name):
                if not is_own_lock(path):  # this run's lock beside an output written into the tree
                    skipped.append((path, "hidden file"))
            elif is_image_file(path):
                images.append(path)
                if identities is not None and inode and here_id is not None:
                    identities[path] = (here_id[0], inode)  # a plain file lives on its folder's device
            else:
                skipped.append((path, "not an image file"))
    images.sort()
    return images, skipped


def _entries(folder: Path) -> tuple[list[Path], list[tuple[Path, int | None]]]:
    """A folder's subfolders (links to folders included) and other entries, each sorted by name, the
    others with the inode the listing gives (None for a link: its target's is not known without a
    stat); a folder that cannot be listed holds nothing (as os.walk treats it)."""
    folders: list[Path] = []
    files: list[tuple[Path, int | None]] = []
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError:
        return folders, files
    for entry in entries:
        try:
            is_folder = entry.is_dir()  # follows a link; a dangling one is no folder
            inode = None if entry.is_symlink() else entry.inode()
        except OSError:
            is_folder, inode = False, None
        if is_folder:
            folders.append(folder / entry.name)
        else:
            files.append((folder / entry.name, inode))
    return folders, files


def file_identity(path: Path, fallback: str) -> tuple[int, int] | str:
    """One key per file however it is reached (a path, a symbolic link, a hard link): its device and
    inode; ``fallback`` (a path key) for a file that cannot be stat'ed (missing, no permission)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL byte in the name
        return fallback
    # Some network and FUSE file systems report inode 0 for every file: then the path is the key.
    return (info.st_dev, info.st_ino) if info.st_ino else fallback


def _folder_id(folder: Path) -> tuple[int, int] | None:
    try:
        info = folder.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def read_regular_file(path: Path, *, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a user's regular file of at most ``max_bytes``; anything else is an InvalidInputError.

    Opened non-blocking and checked on the open handle, so a FIFO is refused instead of
    waiting for a writer, and a device (``/dev/zero``) or a file that keeps growing is never
    read past the cap. Messages name the file, never its folder.
    """
    path = Path(path)
    name = path.name or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InvalidInputError(f"{name} not found", "check the path") from None
    except OSError as exc:
        raise InvalidInputError(f"{name} cannot be read: {exc.strerror}", "check the path and its permissions") from None
    try:  # checked on the descriptor: os.fdopen itself refuses a folder with a bare OSError
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if stat.S_ISDIR(mode):
        os.close(fd)
        raise InvalidInputError(f"{name} is a folder", f"give the {what} itself")
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(mode):
            raise InvalidInputError(f"{name} is not a regular file (a pipe, socket or device)",
                                    f"save the {what} to disk and pass that file")
        if os.fstat(handle.fileno()).st_size > max_bytes:  # refused before reading a byte
            raise _too_large(name, max_bytes, what)
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise InvalidInputError(f"{name} cannot be read: {exc.strerror}", "check the file") from None
    if len(data) > max_bytes:  # it grew while being read
        raise _too_large(name, max_bytes, what)
    return data


def _too_large(name: str, max_bytes: int, what: str) -> InvalidInputError:
    return InvalidInputError(f"{name} is larger than the {max_bytes // (1024 * 1024)} MiB allowed for a {what}",
                             f"check that this is the right file; a {what} is much smaller (split a long one in parts)")


def printable_path(path: Path | str) -> str:
    """``path`` as text that encodes to UTF-8: bytes of a non-UTF-8 file name become ``\\xNN``."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """A text cell a spreadsheet would run as a formula (a file named ``=cmd|...``) gets a leading ``'``.

    Numbers (a negative score) are left as they are.
    """
    if not cell.startswith(_FORMULA_STARTS):
        return cell
    try:
        float(cell)
        return cell
    except ValueError:
        return "'" + cell

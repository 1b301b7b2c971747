"""Atomic file writes: a temp file in the target's folder, then a rename.

A crash or Ctrl-C mid-write leaves the previous file (or nothing) in place, never a
half-written one. Refusing to overwrite without ``force`` lives here so that every
writer behaves the same.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from biomedvr_cli.errors import InvalidInputError, OutputExistsError, OutputNotWritableError


def check_writable(path: Path, *, force: bool) -> None:
    """Fail early, before any work: ``path`` exists without ``force``, or its folder cannot be written.

    The folder check looks at the nearest existing ancestor (missing folders are created
    later): a regular file where a folder should be, or a folder without write permission
    (or on a read-only file system), is an :class:`OutputNotWritableError`.
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(path.name)
    if path.exists() and path.is_dir():
        raise InvalidInputError(f"{path.name} is a folder", "give a file name for the output")
    check_folder_writable(path)


def check_folder_writable(path: Path) -> None:
    """Refuse ``path`` when the folder it would be created in cannot be (a file in the way, no permission)."""
    path = Path(path)
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputNotWritableError(f"cannot write {path.name}: {folder.name} is a file, not a folder",
                                     "choose an output path in a folder you can write to")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputNotWritableError(f"cannot write {path.name}: no permission to write in {folder.name or folder}",
                                     "choose an output path in a folder you can write to")


def not_writable(path: Path, exc: OSError) -> OutputNotWritableError:
    """The one-line error for an output that cannot be written (read-only, not a folder, disk full)."""
    reason = exc.strerror or type(exc).__name__
    return OutputNotWritableError(f"cannot write {path.name} ({reason})",
                                  "choose an output path in a folder you can write to, with free space")


def _missing_parents(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


@contextlib.contextmanager
def reserve_output(path: Path, *, force: bool) -> Iterator[None]:
    """Before long work: check ``path`` can be written and hold it against a second run.

    Creates missing parent folders and a ``.NAME.lock`` beside ``path`` (exclusively, so a
    second run writing the same file fails at once instead of after its training). On the
    way out the lock goes, and so do folders this call created if nothing was written.
    """
    path = Path(path)
    check_writable(path, force=force)
    created = _missing_parents(path.parent)
    lock = path.parent / f".{path.name}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise OutputExistsError(path.name, busy=True) from None
    except OSError as exc:
        _remove_folders(created)
        raise not_writable(path, exc) from None
    os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        if not path.exists():
            _remove_folders(created)


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:  # innermost first; a folder someone else filled stays
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def atomic_path(path: Path, *, force: bool) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it into place.

    On any exception (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    check_writable(path, force=force)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise not_writable(path, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError):  # disk full, quota, the folder made read-only meanwhile
            raise not_writable(path, exc) from None
        raise


def write_bytes_atomic(path: Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str, *, force: bool) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"), force=force)


def write_with_atomic(path: Path, writer: Callable[[Path], None], *, force: bool) -> None:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path, force=force) as tmp:
        writer(tmp)

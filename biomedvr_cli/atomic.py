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

from biomedvr_cli.errors import InvalidInputError, OutputExistsError


def check_writable(path: Path, *, force: bool) -> None:
    """Fail early, before any work, when ``path`` exists and ``force`` is not set."""
    if path.exists() and not force:
        raise OutputExistsError(path.name)
    if path.exists() and path.is_dir():
        raise InvalidInputError(f"{path.name} is a folder", "give a file name for the output")


@contextlib.contextmanager
def atomic_path(path: Path, *, force: bool) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it into place.

    On any exception (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    check_writable(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
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

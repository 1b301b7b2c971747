"""Atomic file writes: a temp file in the target's folder, then a rename.

A crash, Ctrl-C or SIGTERM mid-write leaves the previous file (or nothing) in place, never a
half-written one. Refusing to overwrite without ``force``, refusing an output that is one of
the run's inputs, and reserving an output for a whole run (a lock beside it) live here so
that every writer behaves the same.

Exit codes: an output found unusable before any work (exists, a file where a folder should
be, no permission, an input of the run) is a usage error (2); the operating system failing
while the output is written (disk full, quota, I/O error) exits 3, as every OS error does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from biomedvr_cli.errors import (
    OutputExistsError,
    OutputNotWritableError,
    OutputWriteError,
    UsageError,
)

try:
    import fcntl
except ImportError:  # Windows: a lock is then only its file's existence, and is never taken over
    fcntl = None  # type: ignore[assignment]

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}

# Every file renamed into place by this process, and the outputs a run reserved, so that a Ctrl-C
# arriving after a command has written its output can say so truthfully (the command line resets
# both for each command). Only reserved outputs are named: not cache entries or job files.
_COMMITTED: list[Path] = []
_RESERVED: set[Path] = set()


def committed_outputs() -> list[Path]:
    """The reserved outputs this process has written in full (renamed into place) and that are still there."""
    return [path for path in dict.fromkeys(_COMMITTED) if path in _RESERVED and path.exists()]


def lock_path(path: Path) -> Path:
    """The ``.NAME.lock`` beside an output that holds it for one run (see :func:`reserve_output`)."""
    return path.parent / f".{path.name}.lock"


def is_own_lock(path: Path) -> bool:
    """True for the lock of an output this process reserved: a folder walk passes over it without
    counting it as one of the user's hidden files."""
    return bool(_RESERVED) and Path(path).absolute() in {lock_path(reserved) for reserved in _RESERVED}


def forget_committed() -> None:
    """Start a new record of written outputs (at the start of each command)."""
    _COMMITTED.clear()
    _RESERVED.clear()


def check_writable(path: Path, *, force: bool, option: str = "--out") -> None:
    """Fail early, before any work: ``path`` exists without ``force``, or its folder cannot be written.

    The folder check looks at the nearest existing ancestor (missing folders are created
    later): a regular file where a folder should be, or a folder without write permission
    (or on a read-only file system), is an :class:`OutputNotWritableError`.
    """
    path = Path(path)
    if path.is_dir():  # before the --force hint: forcing would not help
        raise OutputNotWritableError(f"{path.name or path} is a folder", "give a file name for the output (inside it, say)")
    if path.exists() and not path.is_file():  # a pipe, socket or device (/dev/stdout): --force would replace the entry
        raise OutputNotWritableError(f"{path.name or path} is not a regular file (a pipe, socket or device); the output "
                                     "is written beside it and renamed into place, which would replace it",
                                     "give the path of a regular file (or print to stdout where the command can)")
    if (path.exists() or path.is_symlink()) and not force:  # a link to nothing is still an entry the write replaces
        raise OutputExistsError(path.name, option=option)
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
    """The one-line error (exit 2) for an output found unusable before any work (read-only, not a folder)."""
    reason = exc.strerror or type(exc).__name__
    return OutputNotWritableError(f"cannot write {path.name} ({reason})",
                                  "choose an output path in a folder you can write to, with free space")


def write_failed(path: Path, exc: OSError) -> OutputWriteError:
    """The one-line error (exit 3) for an OS failure while ``path`` was written; nothing of it is left."""
    reason = exc.strerror or type(exc).__name__
    hint = ("free some disk space (or quota), or choose an output path on another disk"
            if exc.errno in _DISK_FULL else "check the disk and the folder, or choose another output path")
    return OutputWriteError(f"cannot write {Path(path).name} ({reason}); nothing was written", hint)


def _file_id(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # missing, unreadable, or a name the OS cannot take
        return None
    return st.st_dev, st.st_ino


def refuse_input_as_output(output: Path, inputs: Iterable[Path | None], *, option: str = "--out") -> None:
    """Refuse (exit 2, even with --force) an ``output`` that is the same file as one of ``inputs``.

    Writing it would destroy that input. Files are compared, not spellings: a symlink, a hard
    link or another path to the same file counts. An output that does not exist yet is no input.
    """
    target = _file_id(output)
    if target is None:
        return
    for given in inputs:
        if given is not None and _file_id(given) == target:
            same = "" if Path(given).name == Path(output).name else f" (the input {Path(given).name})"
            forced = "--force" if option.startswith("--") else "force=True"  # Python's words from Python
            raise UsageError(f"{option} {Path(output).name} is also an input of this run{same}; writing it would "
                             f"destroy that input, so it is refused even with {forced}",
                             f"choose another {option} path" if option.startswith("--") else "choose another path")


def refuse_folder_with_inputs(folder: Path, roots: Iterable[Path], files: Iterable[Path], *, option: str) -> None:
    """Refuse (exit 2) an output ``folder`` that is an input folder, lies inside one, or holds input files.

    Files written there would mix with the data (and be read as images by the next run).
    ``roots`` are the input folders given, ``files`` the input files found in them.
    """
    where = Path(folder).resolve()
    for root in roots:
        if Path(root).is_dir() and where.is_relative_to(Path(root).resolve()):
            relation = "is" if where == Path(root).resolve() else "is inside"
            name = Path(root).resolve().name  # "." has no name of its own
            raise UsageError(f"{option} folder {where.name} {relation} the input folder {name}; its files "
                             "would be mixed with your images", f"choose a {option} folder outside the images")
    wanted = _file_id(where)
    if wanted is None:
        return
    parents: dict[str, tuple[int, int] | None] = {}
    for path in files:
        parent = os.path.dirname(os.path.abspath(path))
        if parent not in parents:
            parents[parent] = _file_id(parent)
        if parents[parent] == wanted:
            raise UsageError(f"{option} folder {where.name} holds input images ({Path(path).name}); its files would be "
                             "mixed with them", f"choose a {option} folder that holds none of the inputs")


def missing_parents(folder: Path) -> list[Path]:
    """Folders from ``folder`` up that do not exist yet, innermost first (those ``mkdir(parents=True)`` creates)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


@contextlib.contextmanager
def reserve_output(path: Path, *, force: bool, inputs: Iterable[Path | None] = (),
                   option: str = "--out") -> Iterator[None]:
    """Before long work: check ``path`` can be written and hold it against a second run.

    Refuses a ``path`` that is one of ``inputs`` (see :func:`refuse_input_as_output`), then
    creates missing parent folders and a ``.NAME.lock`` beside ``path`` (exclusively, so a
    second run writing the same file fails at once instead of after its work). A lock whose
    run has ended (killed, machine restarted) is taken over with a warning. On the way out
    the lock goes, and so do folders this call created if nothing was written.
    """
    path = Path(path)
    refuse_input_as_output(path, inputs, option=option)
    check_writable(path, force=force, option=option)
    created = missing_parents(path.parent)
    lock = lock_path(path)
    _RESERVED.add(path.absolute())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire_lock(lock, path.name, option)
    except OSError as exc:
        _remove_folders(created)
        raise not_writable(path, exc) from None
    except BaseException:
        _remove_folders(created)
        raise
    try:
        yield
    finally:
        _release_lock(lock, fd)
        if not path.exists():
            _remove_folders(created)


def _lock_owner_text() -> bytes:
    return f"{os.getpid()} {socket.gethostname()}\n".encode("utf-8", "replace")


def _acquire_lock(lock: Path, name: str, option: str) -> int:
    """Create ``lock`` exclusively (or take over a dead run's) and hold it; its open descriptor.

    Held means an ``flock`` on the file: the kernel drops it when the process ends, however it
    ends, which is how a lock left behind is told from one in use.
    """
    for _ in range(8):  # the file may vanish between two attempts (its run releasing it)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except FileExistsError:
            taken = _take_over(lock, name, option)
            if taken is None:
                continue
            return taken
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while another run looks at this new file, briefly
            os.write(fd, _lock_owner_text())
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                lock.unlink()
            raise
        return fd
    raise OutputExistsError(name, busy=True, option=option)


def _take_over(lock: Path, name: str, option: str) -> int | None:
    """The descriptor of ``lock`` when the run that made it has ended; None to try again; else busy."""
    busy = OutputExistsError(name, busy=True, option=option)
    if fcntl is None:
        raise busy
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        if _file_id(lock) != (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
            os.close(fd)  # released and replaced meanwhile: start again
            return None
        owner = os.read(fd, 512).decode("utf-8", "replace").split()
        # No owner recorded: a lock of an older biomedvr, or a new one not yet written. Left alone.
        if len(owner) != 2 or not owner[0].isdigit() or owner[1] != socket.gethostname() or _alive(int(owner[0])):
            raise busy
        os.ftruncate(fd, 0)
        os.pwrite(fd, _lock_owner_text(), 0)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    warnings.warn(f"took over .{name}.lock, left behind by a biomedvr run (process {owner[0]}) that has ended",
                  stacklevel=2)
    return fd


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # no such process (or no such process id at all)
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _release_lock(lock: Path, fd: int) -> None:
    # Unlinked while still held, and only if it is still ours (not deleted and remade by hand meanwhile).
    with contextlib.suppress(OSError):
        if _file_id(lock) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
            lock.unlink()
    with contextlib.suppress(OSError):
        os.close(fd)


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
        raise write_failed(path, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        _COMMITTED.append(path.absolute())
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError):  # disk full, quota, the folder made read-only meanwhile
            raise write_failed(path, exc) from None
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


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them (main thread only; elsewhere a no-op).

    For a few renames that must happen together: an interrupt between two of them would leave a
    mixed set of files. The block must be short, since the user's Ctrl-C waits for it.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    kinds = (signal.SIGINT, signal.SIGTERM)
    earlier = {kind: signal.signal(kind, lambda number, frame: held.append(number)) for kind in kinds}
    try:
        yield
    finally:
        for kind, handler in earlier.items():
            # None: a handler not set from Python (an embedding program's); the default is the nearest we can put back
            signal.signal(kind, handler if handler is not None else signal.SIG_DFL)
        if held:  # the first one held (a Ctrl-C and then a SIGTERM end the program alike)
            signal.raise_signal(held[0])

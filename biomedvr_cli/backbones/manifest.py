"""The manifest of an exported backbone folder (``biomedvr-export.json``): read, check, verify.

``biomedvr backbones export`` records each file's size and SHA-256. Every load of the folder
checks the manifest's shape, that every file the loader could read is listed and lies inside
the folder, the sizes (cheap: a truncated copy fails at once), and then hashes every listed
file. Hashing runs on every load, with no cache: a cache keyed by size and modification time
would miss an edit that keeps both, and hashing costs little next to building the model
(about 0.05 s for the 24 MB sandbox export, about 1 s for an 800 MB ViT-B/16 on one core).

What this cannot catch: someone who edits a file *and* rewrites its checksum in the manifest
(the manifest is not signed), and a file changed between the check and open_clip reading it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from biomedvr_cli.errors import BackboneUnavailableError

MANIFEST_FILE = "biomedvr-export.json"
SUMS_FILE = "SHA256SUMS"
MANIFEST_FORMAT = "biomedvr-backbone-export"
MANIFEST_VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RECOPY = f"copy the folder again from the export (check it with `sha256sum -c {SUMS_FILE}` inside it)"
_REEXPORT = "export the backbone again with `biomedvr backbones export NAME DIR`"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shown(name: str) -> str:
    """A name as it may be printed: control characters escaped, never sent raw to a terminal."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def _bad(problem: str, hint: str = _REEXPORT) -> BackboneUnavailableError:
    return BackboneUnavailableError(f"{MANIFEST_FILE} in the exported backbone folder {problem}", hint)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_name(name: str) -> None:
    """A listed name must be a plain relative path inside the folder (no ``..``, no absolute path)."""
    path = PurePosixPath(name)
    windows_drive = len(name) > 1 and name[1] == ":"
    if not name or path.is_absolute() or windows_drive or "\\" in name or not name.isprintable():
        raise _bad(f"lists {shown(name)!r}, which is not a relative path inside the folder")
    if any(part in ("..", ".") for part in name.split("/")) or path.as_posix() != name:
        raise _bad(f"lists {shown(name)!r}, which climbs out of the folder or is not a plain relative path")


def manifest_entries(manifest: Any) -> dict[str, tuple[int, str]]:
    """The manifest's files as ``{relative name: (bytes, sha256)}``, after checking every field's type.

    Raises :class:`BackboneUnavailableError` (exit 4) naming the first problem: another format,
    an unknown ``format_version``, ``files`` that is not an object, an entry that is not an
    object, ``bytes`` that is not a whole number, a checksum that is not 64 hex digits, or a
    name outside the folder.
    """
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise _bad(f"is not a {MANIFEST_FORMAT} manifest")
    version = manifest.get("format_version")
    if not _is_int(version) or version != MANIFEST_VERSION:
        raise _bad(f"has format_version {shown(str(version))}; this biomedvr reads {MANIFEST_VERSION}",
                   f"use the biomedvr that wrote the folder, or {_REEXPORT}")
    for key in ("fingerprint", "source"):
        if key in manifest and not isinstance(manifest[key], str):
            raise _bad(f"has a {key} that is not a string")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise _bad("has no \"files\" object of name -> {bytes, sha256}")
    entries: dict[str, tuple[int, str]] = {}
    for name, entry in sorted(files.items()):
        _check_name(name)
        if not isinstance(entry, dict):
            raise _bad(f"has an entry for {name} that is not an object with bytes and sha256")
        size, digest = entry.get("bytes"), entry.get("sha256")
        if not _is_int(size) or size < 0:
            raise _bad(f"gives {name} a size that is not a whole number of bytes ({shown(repr(size))[:40]})")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise _bad(f"gives {name} a sha256 that is not 64 lowercase hex digits")
        entries[name] = (size, digest)
    return entries


def unlisted_files(folder: Path, listed: set[str]) -> list[str]:
    """Files the loader could read that the manifest does not list (hidden files and the manifest itself aside)."""
    found = []
    for root, dirs, names in os.walk(folder):  # does not follow symlinked folders
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            rel = Path(root, name).relative_to(folder).as_posix()
            if not name.startswith(".") and rel not in (MANIFEST_FILE, SUMS_FILE) and rel not in listed:
                found.append(rel)
    return found


def verify_export(folder: Path, manifest: Any) -> None:
    """Check an exported folder against its manifest: every file listed, inside, of its size and SHA-256.

    Sizes are compared first (a truncated copy fails without reading gigabytes), then every
    listed file is hashed. Raises :class:`BackboneUnavailableError` (exit 4) naming the file.
    """
    entries = manifest_entries(manifest)
    unlisted = unlisted_files(folder, set(entries))
    if unlisted:
        raise BackboneUnavailableError(
            f"{shown(unlisted[0])} in the exported backbone folder is not listed in {MANIFEST_FILE}",
            f"remove it (an export lists every file it writes), or {_REEXPORT}")
    inside = folder.resolve()
    for name, (size, _) in entries.items():
        path = folder / name
        if not path.resolve().is_relative_to(inside):
            raise _bad(f"lists {name}, which is a link to a file outside the folder")
        if not path.is_file():
            raise BackboneUnavailableError(f"the exported backbone folder lacks {name}", _RECOPY)
        if path.stat().st_size != size:
            raise BackboneUnavailableError(
                f"{name} in the exported backbone folder has {path.stat().st_size} bytes, its manifest says {size} "
                "(an incomplete copy?)", _RECOPY)
    for name, (_, digest) in entries.items():
        try:
            actual = sha256_file(folder / name)
        except OSError as exc:
            raise BackboneUnavailableError(f"cannot read {name} in the exported backbone folder ({exc.strerror or exc})",
                                           _RECOPY) from None
        if actual != digest:
            raise BackboneUnavailableError(
                f"{name} in the exported backbone folder does not match its SHA-256 in {MANIFEST_FILE} "
                "(the file was changed or damaged after export)", f"{_RECOPY}; or {_REEXPORT}")


__all__ = ["MANIFEST_FILE", "MANIFEST_FORMAT", "MANIFEST_VERSION", "SUMS_FILE", "manifest_entries",
           "sha256_file", "shown", "verify_export"]

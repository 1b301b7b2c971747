"""The attributes cache: one validated attributes file per request set.

The key is the sha256 of (provider, model, prompt version and hash, the task as the prompt
says it, sorted class names, sentences per set), so a hit is exactly the reply the same
request would get and needs no API call and no key. Entries hold only what was sent (class names, task) and
what came back; never a path or an identifier. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from biomedvr_cli.atomic import write_text_atomic
from biomedvr_cli.attributes.prompts import task_key
from biomedvr_cli.attributes.schema import AttributeFile, load_attributes
from biomedvr_cli.errors import BiomedVRError, InvalidInputError

CACHE_ENV = "BIOMEDVR_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$BIOMEDVR_CACHE_DIR``, else the platform's user cache folder + ``biomedvr/attributes``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "biomedvr" / "attributes"


def cache_key(
    *,
    provider: str,
    model: str,
    prompt_version: str,
    prompt_sha256: str,
    task: str,
    class_names: Sequence[str],
    per_class: int,
) -> str:
    """The hex sha256 that names a cache entry."""
    payload = {
        "provider": provider,
        "model": model,
        "prompt_version": prompt_version,
        "prompt_sha256": prompt_sha256,
        "task": task,
        "classes": sorted(class_names),
        "per_class": per_class,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def entry_path(cache_dir: Path, key: str) -> Path:
    """Where the entry for ``key`` lives; the ``attributes-`` prefix keeps a shared folder tidy."""
    return Path(cache_dir) / f"attributes-{key}.json"


class CorruptEntryError(InvalidInputError):
    """A cache entry exists for the request but cannot be used (damaged, edited, or refused by validation)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"the cached attributes for these classes and options are corrupt ({reason})",
            f"delete {path.name} from the cache folder {path.parent}, or run again with --refresh "
            "(without --offline) to ask the LLM and replace it",
        )
        self.path = path
        self.reason = reason


def read_entry(cache_dir: Path, key: str, class_names: Sequence[str], *, task: str | None = None,
               request: Mapping[str, object] | None = None) -> AttributeFile | None:
    """The cached file for ``key`` in the order of ``class_names``; None when there is no entry.

    An entry that cannot be read or fails validation (a damaged or edited file, or one that
    holds an identifier), or whose classes, ``task`` or provenance fields (``request``: provider,
    model, prompt version and hash, sentences a set) are not those its key was made from,
    raises :class:`CorruptEntryError`, so that ``--offline`` can say so; a run that may ask the
    LLM treats it as a miss and overwrites it.
    """
    path = entry_path(cache_dir, key)
    if not path.is_file():
        return None
    try:
        cached = load_attributes(path)
    except InvalidInputError as exc:
        raise CorruptEntryError(path, exc.message.removeprefix(f"{path.name}: ")) from None
    if set(cached.classes) != set(class_names):
        raise CorruptEntryError(path, "its classes are not the ones asked for")
    if task is not None and task_key(cached.task) != task_key(task):
        raise CorruptEntryError(path, "its task is not the one asked for")
    changed = [name for name, value in (request or {}).items() if cached.provenance.get(name) != value]
    if changed:
        raise CorruptEntryError(path, f"its provenance {changed[0]} is not the one asked for")
    return AttributeFile(
        task=cached.task,
        classes={name: cached.classes[name] for name in class_names},
        provenance=cached.provenance,
    )


def write_entry(cache_dir: Path, key: str, attrs: AttributeFile) -> None:
    """Store ``attrs`` under ``key`` atomically (replacing an older entry)."""
    try:
        write_text_atomic(entry_path(cache_dir, key), attrs.to_json(), force=True)
    except OSError as exc:
        raise BiomedVRError(
            f"cannot write the attributes cache: {exc.strerror}; only the cache entry was not stored",
            f"choose a writable --cache-dir or set {CACHE_ENV}",
        ) from None
    except BiomedVRError as exc:  # the folder is a file, or cannot be written
        # The write error ends "nothing was written", which read as if the attributes file were not.
        reason = exc.message.removesuffix("; nothing was written")
        raise BiomedVRError(f"cannot write the attributes cache: {reason}; only the cache entry was not stored",
                            f"choose a writable --cache-dir or set {CACHE_ENV}") from None

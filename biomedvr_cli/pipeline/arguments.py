"""Argument checks for the library calls: a wrong type becomes a BiomedVRError with its fix.

Python callers (notebooks) pass whatever they have: a ``str`` where a ``Path`` is expected,
``"8"`` for a count, ``None`` for a required value. Each is either accepted in its obvious
meaning (a string path) or refused with the project's own error, never left to fail later
as a raw ``AttributeError``/``TypeError`` deep inside (or after scoring every image).
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

from biomedvr_cli.errors import UsageError


def as_path(value: Any, what: str, fix: str) -> Path:
    """``value`` as a Path: a ``str`` or any ``os.PathLike`` is accepted, anything else refused."""
    if isinstance(value, Path):
        return value
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        text = os.fspath(value)
        if isinstance(text, str) and text.strip():
            return Path(text)
    raise UsageError(f"{what} must be a path (str or pathlib.Path), got {_kind(value)}", fix)


def as_optional_path(value: Any, what: str, fix: str) -> Path | None:
    """Like :func:`as_path`, with ``None`` kept as None."""
    return None if value is None else as_path(value, what, fix)


def as_count(value: Any, what: str, minimum: int, fix: str) -> int:
    """A whole number of at least ``minimum``; ``True``, ``2.5`` and ``"8"`` are refused.

    numpy integers count as whole numbers (they come out of arrays and data frames).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{what} must be a whole number, got {_kind(value)}", fix)
    if int(value) < minimum:
        raise UsageError(f"{what} must be at least {minimum}, got {int(value)}", fix)
    return int(value)


# The command line's --seed range (cli/options.MAX_SEED, numpy's): an adapter fitted from Python must be
# reproducible from the command line, so the library takes the same range.
MAX_SEED = 2**32 - 1


def as_seed(value: Any, fix: str = "pass seed=0 (any whole number from 0 to 2**32 - 1)") -> int:
    """A seed numpy, torch and random accept, and ``--seed`` too: a whole number in ``[0, 2**32)``."""
    seed = as_count(value, "seed", 0, fix)
    if seed > MAX_SEED:
        raise UsageError(f"seed must be at most 2**32 - 1 (as --seed), got {seed}", fix)
    return seed


def as_text(value: Any, what: str, fix: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{what} must be a non-empty string, got {_kind(value)}", fix)
    return value


def as_flag(value: Any, what: str) -> bool:
    """A real ``bool`` (``"false"`` is a non-empty string, hence true: refused instead)."""
    if not isinstance(value, bool):
        raise UsageError(f"{what} must be True or False, got {_kind(value)}", f"pass {what}=True or {what}=False")
    return value


def check_backbone_argument(value: Any) -> None:
    """A backbone is a name (``"biomedclip"``, ``"local-dir:DIR"``, ...) or a loaded backbone."""
    from biomedvr_cli.backbones import Backbone
    from biomedvr_cli.backbones.specs import BackboneSpec

    if isinstance(value, (Backbone, BackboneSpec)):  # a spec: an adapter's stored label, parsed
        return
    if isinstance(value, str) and value.strip():
        from biomedvr_cli.backbones.specs import parse_backbone

        parse_backbone(value)  # an unknown name is refused now, before any image is read
        return
    raise UsageError(f"backbone must be a backbone name or a loaded backbone, got {_kind(value)}",
                     'pass backbone="biomedclip" (see `biomedvr backbones`) or biomedvr.load_backbone(name)')


def obtain_backbone(value: Any, *, device: str, allow_download: bool | None):
    """The loaded backbone ``value`` names, or ``value`` itself when it is one (never reloaded)."""
    from biomedvr_cli.backbones import Backbone, load_backbone

    check_backbone_argument(value)
    if isinstance(value, Backbone):
        return value
    return load_backbone(value, device=device, allow_download=allow_download)


def _kind(value: Any) -> str:
    """How a wrong value is named in a message: its type, and its text when short (never a long repr)."""
    if value is None:
        return "None"
    if isinstance(value, (str, numbers.Number)) and len(repr(value)) <= 40:
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__

"""How library notices are told apart: plain information, or a caution the user should act on.

Pipeline calls report through a ``notify(message: str)`` callback. A :class:`Caution` is still
a ``str`` (so every existing callback, the CLI's included, prints it unchanged), but the
Python facade (``import biomedvr``) raises it as a :class:`BiomedVRWarning` through
``warnings`` while plain notices go to the ``biomedvr`` logger at INFO level.
"""

from __future__ import annotations

LOGGER_NAME = "biomedvr"


class Caution(str):
    """A notice that changes what the user gets (e.g. no attributes file: the class-name baseline)."""

    __slots__ = ()


class BiomedVRWarning(UserWarning):
    """What biomedvr warns about from Python: fallbacks, skipped images, optimistic metrics."""


def _is_ours(frame) -> bool:
    """A frame of biomedvr itself, or of the standard wrappers between its functions (decorators)."""
    name = frame.f_globals.get("__name__", "")
    return (name in ("biomedvr", "biomedvr_cli", "contextlib", "functools", "torch.utils._contextlib")
            or name.startswith(("biomedvr.", "biomedvr_cli.")))


def warn_at_caller(message: str) -> None:
    """Warn ``message`` as a :class:`BiomedVRWarning` at the first line outside biomedvr (the user's call),
    however deep inside the library it was found. Under ``simplefilter("error")`` it raises right here,
    so a fit stops before it trains (and writes) anything."""
    import sys
    import warnings

    frame, level = sys._getframe(0), 1
    while frame is not None and _is_ours(frame):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, BiomedVRWarning, stacklevel=level)

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

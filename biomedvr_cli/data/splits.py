"""Split names as users write them, mapped to ``train`` / ``val`` / ``test``."""

from __future__ import annotations

_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def normalise_split(text: str) -> str | None:
    """The canonical split for ``text`` (case and spaces ignored); None when unknown."""
    return _ALIASES.get(text.strip().lower())


def known_split_names() -> str:
    """The accepted spellings, for error messages."""
    return ", ".join(sorted(_ALIASES))

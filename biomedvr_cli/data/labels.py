"""Class labels from folder names and CSV cells: one spelling per class.

Rules (the same as for class lists and attribute files, so names match across files):
- a label is compared and stored in Unicode NFC form with surrounding spaces stripped and
  inner runs of spaces collapsed, so "café" typed on macOS (decomposed) and on Windows
  (composed) is one class, stored once;
- labels that differ only in letter case ("BASOPHIL" and "basophil") are refused: they
  almost always mean one class spelt two ways, and which spelling to keep is the user's call.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable

from biomedvr_cli.errors import InvalidInputError


def canonical_label(text: str) -> str:
    """``text`` in NFC with surrounding spaces stripped and inner runs of spaces collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def label_key(text: str) -> str:
    """The key two labels are compared by: canonical form, ignoring case."""
    return canonical_label(text).casefold()


def _quoted(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def check_distinct_labels(labels: Iterable[str], source: str, what: str) -> None:
    """Refuse canonical labels that differ only in letter case (exit 3), naming both spellings.

    ``source`` names where they come from ("images", "m.csv") and ``what`` what a label is
    there ("class folder", "label").
    """
    seen: dict[str, str] = {}
    for name in sorted(set(labels)):
        key = name.casefold()
        if key in seen and seen[key] != name:
            raise InvalidInputError(
                f"{source}: {what}s {_quoted(seen[key])} and {_quoted(name)} differ only in letter case "
                "(class names are compared ignoring case)",
                f"use one spelling for each class (rename the {what}s so that they match exactly)",
            )
        seen[key] = name


def respelt_notice(raw_by_label: dict[str, set[str]], source: str, what: str) -> str | None:
    """A notice when some label was written in more than one Unicode form (and read as one class)."""
    merged = sorted(label for label, spellings in raw_by_label.items() if len(spellings) > 1)
    if not merged:
        return None
    shown = ", ".join(_quoted(m) for m in merged[:5]) + (f" and {len(merged) - 5} more" if len(merged) > 5 else "")
    return (f"{source}: {what}s written in more than one Unicode form (or spacing) were read as one class each: "
            f"{shown}")

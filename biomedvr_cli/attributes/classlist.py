"""Class lists: ``classes.txt`` files and repeated ``--class`` values.

Rules (the same for both sources): UTF-8, one class per line, blank lines and lines
starting with ``#`` ignored, surrounding spaces stripped and inner runs of spaces
collapsed, names read in Unicode NFC form (so "café" typed two ways is one name); no class
may repeat, ignoring case and Unicode spelling; at least one class. Lines end only at
``\n``, ``\r\n`` or ``\r``: other separators (form feed, U+2028, ...) are characters that
are not plain text and are refused, not taken as line breaks. Every name passes the
identifier check before any message could quote it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from biomedvr_cli.attributes.privacy import MAX_STORED_CLASS_NAME_CHARS, check_stored_text, not_plain_text
from biomedvr_cli.attributes.schema import class_name_key
from biomedvr_cli.attributes.textfile import read_user_text
from biomedvr_cli.errors import InvalidInputError, UsageError


# Spaces and tabs (of any Unicode width); str.split() would also take form feeds, U+2028 and the
# like as spaces, and those are refused instead.
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")


def normalise_class_name(raw: str) -> str:
    """Strip and collapse whitespace and compose accents (NFC): "benign  tumor" = "benign tumor".

    Characters that are not plain text (a form feed, U+2028, a byte that was not UTF-8) are kept,
    not collapsed like spaces, so that the check of :func:`check_class_names` refuses them.
    """
    return unicodedata.normalize("NFC", " ".join(w for w in _SPACES.split(raw) if w))


def check_class_names(names: Iterable[tuple[str, str]], source: str) -> list[str]:
    """Validate ``(label, name)`` pairs and return the names.

    ``label`` says where a name came from ("line 4", "--class 2") so that errors point at it.
    """
    out: list[str] = []
    seen: dict[str, str] = {}
    names = list(names)
    for index, (label, name) in enumerate(names, start=1):
        bad = not_plain_text(name)
        if bad is not None:
            kind = ("a byte that is not UTF-8" if unicodedata.category(bad) == "Cs"
                    else f"the control character U+{ord(bad):04X}")
            raise InvalidInputError(f"{source}: {label} contains {kind}", "remove it; class names are plain text")
        # By place and kind only, before any message below names the class.
        place = f"class {index} of {len(names)}" if label.startswith("--class") else f"{source}: {label}"
        check_stored_text(place, name, limit=MAX_STORED_CLASS_NAME_CHARS,
                          why="class names are sent to the LLM or stored, and must not hold patient data",
                          fix="rename the class to its diagnosis or finding")
        key = class_name_key(name)
        shown = f"{label} {json.dumps(name, ensure_ascii=False)}"  # quoted only after the check above
        if key in seen:
            raise InvalidInputError(
                f"{source}: {shown} duplicates {seen[key]} (class names are compared ignoring case and Unicode "
                "spelling)", "keep each class once")
        seen[key] = shown
        out.append(name)
    if not out:
        raise InvalidInputError(
            f"{source} has no class names (blank lines and # comments are ignored)",
            "write one class name per line",
        )
    return out


_LINE_BREAK = re.compile(r"\r\n|\n|\r")


def parse_class_text(text: str, source: str) -> list[str]:
    """Parse the text of a classes file (already decoded)."""
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        name = normalise_class_name(line)
        if not name or name.startswith("#"):
            continue
        pairs.append((f"line {number}", name))
    return check_class_names(pairs, source)


def read_class_list(path: Path) -> list[str]:
    """Read a ``classes.txt`` file; :class:`InvalidInputError` (exit 3) on any problem.

    Problems: missing file, a folder, undecodable bytes (not UTF-8), no classes, a
    class listed twice (ignoring case), control characters inside a name.
    """
    path = Path(path)
    text = read_user_text(path, missing_hint="check the path of the classes file",
                          folder_hint="give a text file with one class name per line")
    return parse_class_text(text, path.name)


def class_list_from_options(values: Iterable[str]) -> list[str]:
    """Validate names given as repeated ``--class NAME`` options."""
    pairs = [(f"--class #{i}", normalise_class_name(v)) for i, v in enumerate(values, start=1)]
    for label, name in pairs:
        if not name:
            raise InvalidInputError(f"{label} is empty", "give a class name after --class")
    return check_class_names(pairs, "--class")


def class_names_from(classes_file: Path | None, names: Sequence[str] | None, *, required: bool) -> list[str] | None:
    """The class list of ``--classes FILE`` or of repeated ``--class NAME`` (not both).

    None when neither is given and the caller can do without (``required=False``);
    :class:`UsageError` (exit 2) when both are given, or neither while ``required``.
    """
    if classes_file is not None and names:
        raise UsageError("--classes and --class were both given", "use a classes file or repeated --class, not both")
    if classes_file is not None:
        return read_class_list(classes_file)
    if names:
        return class_list_from_options(names)
    if required:
        raise UsageError("no classes given", "pass --classes classes.txt (one class per line) or repeat --class NAME")
    return None

"""Reading a user's UTF-8 text or JSON file with one clear error per problem (exit 3).

Every user file goes through :func:`read_user_text`: only regular files, at most
``MAX_USER_TEXT_BYTES`` (so ``--classes /dev/zero`` or a FIFO cannot hang or grow without
bound), and JSON through :func:`parse_user_json`, which refuses nesting deeper than
``MAX_JSON_DEPTH`` instead of letting a ``[[[[...`` file end in a RecursionError.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from biomedvr_cli.data.files import MAX_USER_TEXT_BYTES, read_regular_file
from biomedvr_cli.errors import InvalidInputError

# Attribute, task and suite files nest four or five levels; 64 leaves room and stays far
# below Python's recursion limit for everything that walks the parsed value later.
MAX_JSON_DEPTH = 64


def read_user_text(path: Path, *, missing_hint: str, folder_hint: str, max_bytes: int = MAX_USER_TEXT_BYTES) -> str:
    """The file's text; missing, a folder, not a regular file, too large, unreadable or not UTF-8 -> InvalidInputError."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise InvalidInputError(f"{path.name} not found", missing_hint)
    if path.is_dir():
        raise InvalidInputError(f"{path.name} is a folder", folder_hint)
    raw = read_regular_file(path, max_bytes=max_bytes, what="text file")
    try:
        # utf-8-sig: Windows editors often prepend a byte-order mark.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{path.name} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} on line {line})",
            "save the file as UTF-8 text",
        ) from None


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), computed without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_user_json(text: str, name: str, fix_hint: str,
                    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """Parse a user's JSON text; bad JSON (with its position) or nesting deeper than MAX_JSON_DEPTH -> InvalidInputError.

    ``json.JSONDecodeError`` is a ``ValueError``; other ValueErrors raised by the hook pass through.
    """
    too_deep = InvalidInputError(f"{name} is nested more than {MAX_JSON_DEPTH} levels deep", fix_hint)
    try:
        value = json.loads(text, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                                fix_hint) from None
    except RecursionError:  # the C parser recurses once per level
        raise too_deep from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    return value


def read_user_json(path: Path, *, missing_hint: str, fix_hint: str) -> Any:
    """The parsed JSON of a user's file; read errors as :func:`read_user_text`, bad JSON with its position."""
    text = read_user_text(path, missing_hint=missing_hint, folder_hint=missing_hint)
    return parse_user_json(text, Path(path).name, fix_hint)

"""Reading a user's UTF-8 text or JSON file with one clear error per problem (exit 3).

Every user file goes through :func:`read_user_text`: only regular files, at most
``MAX_USER_TEXT_BYTES`` (so ``--classes /dev/zero`` or a FIFO cannot hang or grow without
bound), and JSON through :func:`parse_user_json`, which refuses nesting deeper than
``MAX_JSON_DEPTH`` instead of letting a ``[[[[...`` file end in a RecursionError, and
numbers that are not ordinary finite values (``NaN``, ``Infinity``, ``1e999``, an integer of
thousands of digits, which Python refuses to convert) instead of letting them fail later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from biomedvr_cli.data.files import MAX_USER_TEXT_BYTES, read_regular_file
from biomedvr_cli.errors import InvalidInputError

# Attribute, task and suite files nest four or five levels; 64 leaves room and stays far
# below Python's recursion limit for everything that walks the parsed value later.
MAX_JSON_DEPTH = 64
# No count, size or seed a user file holds needs more digits; Python itself stops at 4300.
MAX_INTEGER_DIGITS = 30


class JsonNumberError(ValueError):
    """A number in a user's JSON that biomedvr does not read: too many digits, NaN or infinite."""


def _read_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise JsonNumberError(f"holds an integer of {digits} digits; at most {MAX_INTEGER_DIGITS} are read")
    return int(text)


def _read_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonNumberError("holds a number too large to represent")
    return value


def _refuse_constant(name: str) -> float:
    raise JsonNumberError(f"holds {name}, which is not a number JSON allows")


def load_json_strictly(text: str, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """``json.loads`` that raises :class:`JsonNumberError` on NaN, Infinity, overflowing or overlong numbers."""
    return json.loads(text, object_pairs_hook=object_pairs_hook, parse_int=_read_int, parse_float=_read_float,
                      parse_constant=_refuse_constant)


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

    Numbers that are NaN, infinite or of more than ``MAX_INTEGER_DIGITS`` digits are refused too,
    and so is a key repeated in one object (unless ``object_pairs_hook`` decides): JSON readers
    disagree on which copy wins, so neither is taken silently.
    ``json.JSONDecodeError`` is a ``ValueError``; other ValueErrors raised by the hook pass through.
    """
    too_deep = InvalidInputError(f"{name} is nested more than {MAX_JSON_DEPTH} levels deep", fix_hint)
    if object_pairs_hook is None:
        object_pairs_hook = lambda pairs: _refuse_repeated_keys(pairs, name, fix_hint)  # noqa: E731
    try:
        value = load_json_strictly(text, object_pairs_hook)
    except JsonNumberError as exc:
        raise InvalidInputError(f"{name} {exc}", fix_hint) from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                                fix_hint) from None
    except RecursionError:  # the C parser recurses once per level
        raise too_deep from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    return value


def _refuse_repeated_keys(pairs: list[tuple[str, Any]], name: str, fix_hint: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidInputError(f"{name}: key {json.dumps(key, ensure_ascii=False)[:80]} appears twice in one "
                                    "object", fix_hint)
        out[key] = value
    return out


def read_user_json(path: Path, *, missing_hint: str, fix_hint: str) -> Any:
    """The parsed JSON of a user's file; read errors as :func:`read_user_text`, bad JSON with its position."""
    text = read_user_text(path, missing_hint=missing_hint, folder_hint=missing_hint)
    return parse_user_json(text, Path(path).name, fix_hint)

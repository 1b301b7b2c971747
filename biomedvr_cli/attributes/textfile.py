"""Reading a user's UTF-8 text or JSON file with one clear error per problem (exit 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from biomedvr_cli.errors import InvalidInputError


def read_user_text(path: Path, *, missing_hint: str, folder_hint: str) -> str:
    """The file's text; missing, a folder, unreadable or not UTF-8 -> InvalidInputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path.name} not found", missing_hint)
    if path.is_dir():
        raise InvalidInputError(f"{path.name} is a folder", folder_hint)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path.name} cannot be read: {exc.strerror}", "check its permissions") from None
    try:
        # utf-8-sig: Windows editors often prepend a byte-order mark.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{path.name} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} on line {line})",
            "save the file as UTF-8 text",
        ) from None


def read_user_json(path: Path, *, missing_hint: str, fix_hint: str) -> Any:
    """The parsed JSON of a user's file; read errors as :func:`read_user_text`, bad JSON with its position."""
    text = read_user_text(path, missing_hint=missing_hint, folder_hint=missing_hint)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{Path(path).name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", fix_hint
        ) from None

"""Reading a user's UTF-8 text file with one clear error per problem (exit 3)."""

from __future__ import annotations

from pathlib import Path

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

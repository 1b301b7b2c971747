"""CSV manifests: one row per image with its path, label, and optional split and group."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from biomedvr_cli.data.files import MAX_MANIFEST_BYTES, is_image_file, read_regular_file
from biomedvr_cli.data.records import CsvColumns, ImageRecord, ImageSource
from biomedvr_cli.data.splits import known_split_names, normalise_split
from biomedvr_cli.errors import InvalidInputError

# Spreadsheet exports in many locales use ';' and some tools use tabs.
_DELIMITERS = (",", ";", "\t")
# Used only when the group column keeps its default name and is absent.
_GROUP_FALLBACKS = ("patient_id", "patient")


@dataclass(frozen=True)
class _Layout:
    """Where each column sits in the manifest; None when absent."""

    delimiter: str
    path: int
    label: int | None
    split: int | None
    group: int | None


def read_manifest(csv_path: Path, columns: CsvColumns = CsvColumns(), *, require_labels: bool = True) -> ImageSource:
    """Read a manifest; image paths are relative to the CSV's folder unless absolute.

    Rows naming a file that is missing or not an image, and repeated rows, are skipped
    with a reason; a manifest where every listed file is missing is an error (the paths
    are probably relative to another folder).
    """
    records: list[ImageRecord] = []
    skipped: list[tuple[Path, str]] = []
    seen: dict[Path, ImageRecord] = {}
    for where, record in _rows(csv_path, columns, require_labels):
        if record.path in seen:
            if seen[record.path].label != record.label:
                raise InvalidInputError(
                    f"{where}: {record.path.name} is listed again with another label",
                    "give each image one row (one label)",
                )
            skipped.append((record.path, "listed more than once in the manifest"))
        elif not record.path.is_file():
            skipped.append((record.path, "listed in the manifest but not found"))
        elif not is_image_file(record.path):
            skipped.append((record.path, "not an image file"))
        else:
            seen[record.path] = record
            records.append(record)
    if not records:
        _raise_nothing_usable(csv_path.name, skipped)
    classes = sorted({r.label for r in records if r.label is not None})
    return ImageSource(records=records, classes=classes, skipped=skipped)


def manifest_paths(csv_path: Path, columns: CsvColumns = CsvColumns()) -> list[Path]:
    """Every path a manifest lists, in order, each once; labels optional.

    Missing and unreadable files stay in the list so that decoding reports each of them;
    only a manifest where no listed file exists is an error.
    """
    paths = list(dict.fromkeys(record.path for _, record in _rows(csv_path, columns, False)))
    if not any(p.is_file() for p in paths):
        _raise_nothing_usable(csv_path.name, [(p, "listed in the manifest but not found") for p in paths])
    return paths


def _rows(csv_path: Path, columns: CsvColumns, require_labels: bool) -> Iterator[tuple[str, ImageRecord]]:
    """Each non-blank row as (where, record), where is "name line N" for messages."""
    text = _read_text(csv_path)
    layout = _find_layout(text, csv_path.name, columns, require_labels)
    reader = csv.reader(io.StringIO(text), delimiter=layout.delimiter)
    next(reader)  # the header, already read by _find_layout
    for row in reader:
        if any(cell.strip() for cell in row):
            where = f"{csv_path.name} line {reader.line_num}"
            yield where, _parse_row(row, layout, csv_path.parent, where, require_labels)


def _raise_nothing_usable(name: str, skipped: list[tuple[Path, str]]) -> None:
    missing = sum(why == "listed in the manifest but not found" for _, why in skipped)
    if missing:
        raise InvalidInputError(
            f"none of the {missing} files listed in {name} exist",
            "relative paths are read from the CSV's own folder; check the path column",
        )
    raise InvalidInputError(f"{name} lists no usable images", "add one row per image under a header row")


def _read_text(csv_path: Path) -> str:
    """The manifest as text; a BOM from spreadsheet exports is dropped. Only regular files, up to a size cap."""
    raw = read_regular_file(csv_path, max_bytes=MAX_MANIFEST_BYTES, what="CSV manifest")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{csv_path.name} is not UTF-8 text", "save the manifest as CSV UTF-8") from None


def _find_layout(text: str, name: str, columns: CsvColumns, require_labels: bool) -> _Layout:
    """Pick the delimiter whose header has the path column, and locate every column."""
    first_line = text.splitlines()[0] if text.strip() else ""
    if not first_line.strip():
        raise InvalidInputError(
            f"{name} is empty", f"write a header row ({columns.path},{columns.label}) and one row per image"
        )
    header: list[str] = []
    for delimiter in _DELIMITERS:
        header = [h.strip() for h in next(csv.reader([first_line], delimiter=delimiter))]
        path = _column(header, columns.path)
        if path is not None:
            break
    else:
        raise InvalidInputError(
            f"{name} has no '{columns.path}' column (found: {', '.join(header)[:120]})",
            "rename the image column to 'path', or pass its name with --path-column",
        )
    label = _column(header, columns.label)
    if label is None and require_labels:
        raise InvalidInputError(
            f"{name} has no '{columns.label}' column (found: {', '.join(header)[:120]})",
            "rename the class column to 'label', or pass its name with --label-column",
        )
    split = _optional(header, columns.split, CsvColumns.split, name, "split")
    group = _optional(header, columns.group, CsvColumns.group, name, "group")
    if group is None and columns.group == CsvColumns.group:
        group = next((i for i in (_column(header, c) for c in _GROUP_FALLBACKS) if i is not None), None)
    return _Layout(delimiter=delimiter, path=path, label=label, split=split, group=group)


def _column(header: list[str], wanted: str) -> int | None:
    """Index of a column: exact name first, then ignoring case."""
    if wanted in header:
        return header.index(wanted)
    lowered = [h.lower() for h in header]
    return lowered.index(wanted.lower()) if wanted.lower() in lowered else None


def _optional(header: list[str], wanted: str, default: str, name: str, role: str) -> int | None:
    """An optional column; one the user named explicitly must exist."""
    index = _column(header, wanted)
    if index is None and wanted != default:
        raise InvalidInputError(
            f"{name} has no '{wanted}' column for the {role}",
            f"check the {role} column name, or leave it at its default to go without",
        )
    return index


def _cell(row: list[str], index: int | None) -> str:
    """A stripped cell; short rows read as empty cells."""
    if index is None or index >= len(row):
        return ""
    return row[index].strip()


def _parse_row(row: list[str], layout: _Layout, base: Path, where: str, require_labels: bool) -> ImageRecord:
    """One manifest row as a record, or an error naming the line."""
    raw_path = _cell(row, layout.path)
    if not raw_path:
        raise InvalidInputError(f"{where}: the path is empty", "fill in the image path or delete the row")
    path = _resolve(raw_path, base)
    label = _cell(row, layout.label) or None
    if label is None and require_labels:
        raise InvalidInputError(f"{where}: {path.name} has no label", "fill in its class or delete the row")
    split_text = _cell(row, layout.split)
    split = normalise_split(split_text) if split_text else None
    if split_text and split is None:
        raise InvalidInputError(
            f"{where}: unknown split '{split_text[:40]}'",
            f"use train, val or test (accepted: {known_split_names()}) or leave it empty",
        )
    group = _cell(row, layout.group) or None
    return ImageRecord(path=path, label=label, split=split, group=group)


def _resolve(raw: str, base: Path) -> Path:
    """Relative paths start at the CSV's folder; Windows separators are accepted."""
    path = Path(raw)
    if not path.is_absolute():
        path = base / path
    if not path.exists() and "\\" in raw:
        alternative = Path(raw.replace("\\", "/"))
        path = alternative if alternative.is_absolute() else base / alternative
    # "a/../b.png" and "b.png" are the same image: normalise so duplicates are caught.
    return Path(os.path.normpath(path))

"""CSV manifests: one row per image with its path, label, and optional split and group.

Bounded before anything per row touches the disk: the file is read only up to
``MAX_MANIFEST_BYTES`` and parsed only up to ``MAX_MANIFEST_ROWS`` rows; repeated rows are
recognised from their text, so a file that repeats one row a million times is refused in
a second or two, not after a million file checks.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from biomedvr_cli.data.files import MAX_MANIFEST_BYTES, is_image_file, read_regular_file
from biomedvr_cli.data.idcolumns import grouping_notice, id_columns
from biomedvr_cli.data.labels import canonical_label, check_distinct_labels, respelt_notice
from biomedvr_cli.data.records import NO_GROUP, CsvColumns, ImageRecord, ImageSource
from biomedvr_cli.data.splits import known_split_names, normalise_split
from biomedvr_cli.errors import InvalidInputError

__all__ = ["MAX_MANIFEST_BYTES", "MAX_MANIFEST_ROWS", "manifest_paths", "read_manifest"]

#: Rows (not counting the header and blank lines) a manifest may have. Far above a few-shot
#: fit or a test set; a larger list of images is predicted or evaluated in parts.
MAX_MANIFEST_ROWS = 500_000
# Spreadsheet exports in many locales use ';' and some tools use tabs.
_DELIMITERS = (",", ";", "\t")
_MISSING = "listed in the manifest but not found"
_REPEATED = "listed more than once in the manifest"


@dataclass(frozen=True)
class _Layout:
    """Where each column sits in the manifest; None when absent."""

    delimiter: str
    path: int
    label: int | None
    split: int | None
    group: int | None
    notices: tuple[str, ...] = ()
    header_line: int = 1  # blank lines above the header are allowed


@dataclass
class _Parsed:
    """Every non-blank row as (where, record), and what the user should hear about the file."""

    rows: list[tuple[str, ImageRecord]]
    notices: list[str] = field(default_factory=list)


def read_manifest(csv_path: Path, columns: CsvColumns = CsvColumns(), *, require_labels: bool = True) -> ImageSource:
    """Read a manifest; image paths are relative to the CSV's folder unless absolute.

    Rows naming a file that is missing or not an image, and repeated rows, are skipped
    with a reason; a manifest where every listed file is missing is an error (the paths
    are probably relative to another folder), and so are labels that differ only in case.
    """
    parsed = _parse(csv_path, columns, require_labels)
    records: list[ImageRecord] = []
    skipped: list[tuple[Path, str]] = []
    first: dict[tuple[int, int] | str, ImageRecord] = {}
    folders: dict[str, str] = {}
    for where, record in parsed.rows:
        info = _stat(record.path)
        # One file however it is reached: by (device, inode), so hard links too; by its real path when not
        # found, or where the file system gives no inode numbers.
        key = (info.st_dev, info.st_ino) if info is not None and info.st_ino else same_file_key(record.path, folders)
        earlier = first.get(key)
        if earlier is not None:
            if earlier.label != record.label:
                raise InvalidInputError(
                    f"{where}: {record.path.name} is listed again with another label",
                    "give each image one row (one label)",
                )
            if earlier.split != record.split:  # e.g. train and test: which one holds would decide a leak
                raise InvalidInputError(
                    f"{where}: {record.path.name} is listed again with another split "
                    f"({earlier.split or 'none'}, then {record.split or 'none'})",
                    "give each image one row (one split)",
                )
            skipped.append((record.path, _REPEATED))
            continue
        first[key] = record
        if info is None or not stat.S_ISREG(info.st_mode):
            skipped.append((record.path, _MISSING))
        elif not is_image_file(record.path):
            skipped.append((record.path, "not an image file"))
        else:
            records.append(record)
    if not records:
        _raise_nothing_usable(csv_path.name, skipped)
    classes = sorted({r.label for r in records if r.label is not None})
    return ImageSource(records=records, classes=classes, skipped=skipped, notices=parsed.notices)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):  # missing, no permission, a NUL byte in the name
        return None


def manifest_paths(csv_path: Path, columns: CsvColumns = CsvColumns()) -> list[Path]:
    """Every path a manifest lists, in order, each once; labels optional.

    Missing and unreadable files stay in the list so that decoding reports each of them;
    only a manifest where no listed file exists is an error.
    """
    by_file: dict[str, Path] = {}
    folders: dict[str, str] = {}
    for _, record in _parse(csv_path, columns, False).rows:
        by_file.setdefault(same_file_key(record.path, folders), record.path)
    paths = list(by_file.values())
    if not any(p.is_file() for p in paths):
        _raise_nothing_usable(csv_path.name, [(p, _MISSING) for p in paths])
    return paths


def _parse(csv_path: Path, columns: CsvColumns, require_labels: bool) -> _Parsed:
    """Read, bound and parse the whole manifest (no file checks yet)."""
    name = csv_path.name
    text = _read_text(csv_path)
    layout = _find_layout(text, name, columns, require_labels)
    rows: list[tuple[str, ImageRecord]] = []
    by_cell: dict[str, Path] = {}  # a path cell seen before resolves the same way: no work per repeat
    spellings: dict[str, set[str]] = {}
    for start, end, row in _csv_rows(text, layout.delimiter, name, layout.header_line):
        where = f"{name} line {start}"
        _check_single_line(row, layout, where, end)
        record = _parse_row(row, layout, csv_path.parent, where, require_labels, by_cell)
        if record.label is not None:
            spellings.setdefault(record.label, set()).add(_cell(row, layout.label))
        rows.append((where, record))
    check_distinct_labels(spellings, name, "label")
    notices = list(layout.notices)
    respelt = respelt_notice(spellings, name, "label")
    if respelt:
        notices.append(respelt)
    return _Parsed(rows, notices)


def _csv_rows(text: str, delimiter: str, name: str, header_line: int = 1) -> Iterator[tuple[int, int, list[str]]]:
    """``(first line, last line, cells)`` of each non-blank row after the header, at most MAX_MANIFEST_ROWS."""
    # newline=None: lines may end in CR only (Excel's "CSV (Macintosh)"), as well as LF or CRLF.
    reader = csv.reader(io.StringIO(text, newline=None), delimiter=delimiter, strict=True)
    end = 0
    count = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _csv_error(name, start, exc) from None
        end = reader.line_num
        if start <= header_line or not any(cell.strip() for cell in row):
            continue  # blank lines above the header, the header (read by _find_layout), or a blank row
        count += 1
        if count > MAX_MANIFEST_ROWS:
            raise InvalidInputError(
                f"{name} has more than {MAX_MANIFEST_ROWS:,} rows, the limit for a manifest",
                f"split it into manifests of at most {MAX_MANIFEST_ROWS:,} rows (and remove repeated rows)",
            )
        yield start, end, row


def _csv_error(name: str, start: int, exc: csv.Error) -> InvalidInputError:
    """A CSV syntax error as an input error naming the line where the row starts."""
    text = str(exc)
    if "field larger than field limit" in text:
        return InvalidInputError(
            f"{name} line {start}: a field is longer than the {csv.field_size_limit():,} characters allowed",
            "check that this is a manifest of image paths and labels (an unclosed quote can also swallow the rest "
            "of the file into one field)",
        )
    if "unexpected end of data" in text:
        return InvalidInputError(
            f"{name} line {start}: a quote (\") opened on this line is never closed",
            'close the quoted field, or remove the stray quote; a quote inside a quoted field is written twice ("")',
        )
    return InvalidInputError(
        f"{name} line {start}: not valid CSV ({text[:80]})",
        'put quotes around a whole field only, and write a quote inside a quoted field twice ("")',
    )


def _check_single_line(row: list[str], layout: _Layout, where: str, end: int) -> None:
    """A path, label, split or group that spans lines comes from a misplaced quote, not from the user's data."""
    for index in (layout.path, layout.label, layout.split, layout.group):
        if index is not None and index < len(row) and ("\n" in row[index] or "\r" in row[index]):
            raise InvalidInputError(
                f"{where}: a quoted field that starts on this line runs on to line {end} (a misplaced quote?)",
                'remove the stray quote (") on this line, or close the quoted field on the same line',
            )


def _raise_nothing_usable(name: str, skipped: list[tuple[Path, str]]) -> None:
    missing = sum(why == _MISSING for _, why in skipped)
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


def _header(text: str, name: str, columns: CsvColumns) -> tuple[str, list[str], int, int]:
    """(delimiter, header cells, path column, header line) from the first line that is not blank (blank lines,
    or lines of delimiters only, above it are skipped): the delimiter whose header has the path column."""
    lines = re.split(r"\r\n|\r|\n", text)
    number = next((i for i, line in enumerate(lines, start=1) if line.strip(" \t,;")), None)
    if number is None:
        raise InvalidInputError(
            f"{name} is empty", f"write a header row ({columns.path},{columns.label}) and one row per image"
        )
    first_line = lines[number - 1]
    # Excel's "sep=;" first line names the delimiter; the header follows it.
    declared = re.fullmatch(r"\s*sep=(.)\s*", first_line, flags=re.IGNORECASE)
    delimiters = _DELIMITERS
    if declared and declared.group(1) in _DELIMITERS:
        # The header is the next line that is not blank, as above the "sep=" line.
        after = next((i for i in range(number + 1, len(lines) + 1) if lines[i - 1].strip(" \t,;")), None)
        if after is None:
            raise InvalidInputError(f"{name} has a sep= line but no header row after it",
                                    f"write a header row ({columns.path},{columns.label}) and one row per image")
        delimiters, number = (declared.group(1),), after
        first_line = lines[number - 1]
    header: list[str] = []
    for delimiter in delimiters:
        try:
            header = [h.strip() for h in next(csv.reader([first_line], delimiter=delimiter, strict=True))]
        except csv.Error as exc:
            raise _csv_error(name, 1, exc) from None
        path = _column(header, columns.path)
        if path is not None:
            return delimiter, header, path, number
    raise InvalidInputError(
        f"{name} has no '{columns.path}' column (found: {', '.join(header)[:120]})",
        "rename the image column to 'path', or pass its name with --path-column",
    )


def _find_layout(text: str, name: str, columns: CsvColumns, require_labels: bool) -> _Layout:
    """Pick the delimiter whose header has the path column, and locate every column."""
    delimiter, header, path, header_line = _header(text, name, columns)
    label = _column(header, columns.label)
    if label is None and require_labels:
        raise InvalidInputError(
            f"{name} has no '{columns.label}' column (found: {', '.join(header)[:120]})",
            "rename the class column to 'label', or pass its name with --label-column",
        )
    split = _optional(header, columns.split, CsvColumns.split, name, "split", "--split-column")
    group, notices = _group_column(header, columns.group, name, {path, label, split})
    _refuse_twin_columns(header, [i for i in (path, label, split, group) if i is not None], name)
    return _Layout(delimiter=delimiter, path=path, label=label, split=split, group=group, notices=notices,
                   header_line=header_line)


def _refuse_twin_columns(header: list[str], used: list[int], name: str) -> None:
    """A column read (path, label, split, group) whose name appears twice, ignoring case (``path,path``,
    ``label,Label``): which one holds the data is a guess, so the user says."""
    for index in used:
        twins = [h for h in header if h.lower() == header[index].lower()]
        if len(twins) > 1:
            raise InvalidInputError(f"{name} has {len(twins)} columns named '{header[index]}' (ignoring case)",
                                    "rename or delete the extra column, so that each one is named once")


def _group_column(header: list[str], wanted: str | None, name: str, used: set[int | None]) -> tuple[int | None, tuple[str, ...]]:
    """The group column: the one named, else ``group``, else an id-like column (with a notice)."""
    if wanted is not None:
        index = _column(header, wanted)
        if index is None and wanted.lower() == NO_GROUP:
            return None, ()
        if index is None:
            raise InvalidInputError(
                f"{name} has no '{wanted}' column for the group (found: {', '.join(header)[:120]})",
                "check the --group-column name (the patient or study id column), or pass --group-column none",
            )
        return index, ()
    index = _column(header, "group")
    if index is not None:
        return index, ()
    found = id_columns(header, {i for i in used if i is not None})
    if not found:
        return None, ()
    return found[0].index, (grouping_notice(name, found[0], found[1:]),)


def _column(header: list[str], wanted: str) -> int | None:
    """Index of a column: exact name first, then ignoring case."""
    if wanted in header:
        return header.index(wanted)
    lowered = [h.lower() for h in header]
    return lowered.index(wanted.lower()) if wanted.lower() in lowered else None


def _optional(header: list[str], wanted: str, default: str, name: str, role: str, option: str) -> int | None:
    """An optional column; one the user named explicitly must exist."""
    index = _column(header, wanted)
    if index is None and wanted != default:
        raise InvalidInputError(
            f"{name} has no '{wanted}' column for the {role} (found: {', '.join(header)[:120]})",
            f"check the {option} name, or leave it out to go without",
        )
    return index


def _cell(row: list[str], index: int | None) -> str:
    """A stripped cell; short rows read as empty cells."""
    if index is None or index >= len(row):
        return ""
    return row[index].strip()


def _parse_row(row: list[str], layout: _Layout, base: Path, where: str, require_labels: bool,
               by_cell: dict[str, Path]) -> ImageRecord:
    """One manifest row as a record, or an error naming the line."""
    raw_path = _cell(row, layout.path)
    if not raw_path:
        raise InvalidInputError(f"{where}: the path is empty", "fill in the image path or delete the row")
    if "\x00" in raw_path:  # no file system allows it; the manifest is damaged or not text
        raise InvalidInputError(f"{where}: the path holds a NUL byte", "fix the row, or export the manifest again")
    path = by_cell.get(raw_path)
    if path is None:
        path = by_cell[raw_path] = _resolve(raw_path, base)
    label = canonical_label(_cell(row, layout.label)) or None
    if label is None and require_labels:
        raise InvalidInputError(f"{where}: {path.name} has no label", "fill in its class or delete the row")
    split_text = _cell(row, layout.split)
    split = normalise_split(split_text) if split_text else None
    if split_text and split is None:
        raise InvalidInputError(
            f"{where}: unknown split '{split_text[:40]}'",
            f"use train, val or test (accepted: {known_split_names()}) or leave it empty",
        )
    group = group_key(_cell(row, layout.group)) or None
    return ImageRecord(path=path, label=label, split=split, group=group)


def group_key(text: str) -> str:
    """One patient spelt "P-017", "p-017 ", "Ｐ-017" (full width), "José" in NFC or NFD (a Mac or Windows
    round trip) or with a zero-width space is one group: merging can only keep more images together."""
    folded = unicodedata.normalize("NFKC", text)
    folded = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    return " ".join(folded.split()).casefold()


def _resolve(raw: str, base: Path) -> Path:
    """Relative paths start at the CSV's folder; Windows separators are accepted."""
    path = Path(raw)
    if not path.is_absolute():
        path = base / path
    if "\\" in raw and not path.exists():
        alternative = Path(raw.replace("\\", "/"))
        path = alternative if alternative.is_absolute() else base / alternative
    # "a/../b.png" reads as "b.png", unless a link comes before the "..": then the operating system
    # climbs out of the link's target, and the path must stay as written to name that file.
    normal = Path(os.path.normpath(path))
    return normal if ".." not in path.parts or os.path.realpath(path) == os.path.realpath(normal) else path


def same_file_key(path: Path, folders: dict[str, str] | None = None) -> str:
    """One key per file, however its path is spelt (relative or absolute, through links, with ".."):
    repeated rows are found by it. ``folders`` caches each folder's real path (rows share a few
    folders; resolving every row in full costs seconds on a 500,000-row manifest)."""
    if os.path.islink(path):
        return os.path.realpath(path)
    parent, name = os.path.split(os.fspath(path))
    if folders is None:
        return os.path.join(os.path.realpath(parent or "."), name)
    if parent not in folders:
        folders[parent] = os.path.realpath(parent or ".")
    return os.path.join(folders[parent], name)

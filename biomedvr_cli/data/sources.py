"""Entry points for image inputs: a folder tree or CSV manifest, or files to predict on."""

from __future__ import annotations

from pathlib import Path

from biomedvr_cli.data.files import is_image_file, walk_images
from biomedvr_cli.data.folder import read_folder_tree
from biomedvr_cli.data.manifest import manifest_paths, read_manifest
from biomedvr_cli.data.records import NO_GROUP, CsvColumns, ImageSource
from biomedvr_cli.errors import InvalidInputError, UsageError

__all__ = ["collect_inputs", "is_image_file", "open_source"]


def _is_manifest(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _require_exists(path: Path) -> None:
    if not path.exists():
        raise InvalidInputError(
            f"{path.name or path} does not exist",
            "check the path (pass a class-per-folder tree, a CSV manifest or image files)",
        )


def open_source(path: Path, *, columns: CsvColumns = CsvColumns(), require_labels: bool = True) -> ImageSource:
    """Open labelled images: a class-per-folder tree (folder) or a CSV manifest (``.csv``).

    Raises :class:`InvalidInputError` with a fix hint for a missing path, a folder without
    class folders or images, a CSV lacking a required column, an unknown split value, and
    the like.
    """
    path = Path(path)
    _require_exists(path)
    if path.is_dir():
        _refuse_csv_columns(path, columns)
        return read_folder_tree(path, require_labels=require_labels)
    if _is_manifest(path):
        return read_manifest(path, columns, require_labels=require_labels)
    raise InvalidInputError(
        f"{path.name} is neither a folder nor a .csv manifest",
        "pass a folder with one subfolder per class, or a CSV with path and label columns",
    )


def _refuse_csv_columns(folder: Path, columns: CsvColumns) -> None:
    """Column names given for a folder would be ignored: a group column that groups nothing most of all."""
    named = [f"the {role} column {value!r} (--{role}-column, {role}_column=)" for role, value, default in (
        ("path", columns.path, "path"), ("label", columns.label, "label"), ("split", columns.split, "split"),
        ("group", columns.group, None)) if value != default and not (role == "group" and str(value).lower() == NO_GROUP)]
    if named:
        verb = "applies" if len(named) == 1 else "apply"
        raise UsageError(f"{folder.resolve().name} is a folder, and {', '.join(named)} {verb} to a CSV manifest only",
                         "leave them out (a folder's class folders are its labels and train/val/test folders its "
                         "splits), or pass a CSV manifest; to keep each patient's images together, use a CSV with a "
                         "group column")


def collect_inputs(paths: list[Path], *, columns: CsvColumns = CsvColumns(),
                   skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """The image files to predict on, in order, each once.

    Files are taken as given: a missing or unreadable one stays in the list and gets its own
    error row when decoding, as a broken file inside a folder does, and so does a folder with
    no image file (only when nothing given exists, or no image is found at all, is that an
    error here, before any model is loaded). Folders are searched recursively for image and
    DICOM files (sorted, hidden entries skipped); CSV manifests expand to their path column in
    row order (a label column is optional; listed files that are missing stay in, so decoding
    reports them). Files inside folders that are not images are added to ``skipped`` when it is
    given, so the caller can say so (hidden entries and link loops are passed over quietly).
    """
    given = [Path(p) for p in paths]
    missing = [p for p in given if not p.exists()]
    if missing and len(missing) == len(given):
        _require_exists(missing[0])
    found: list[Path] = []
    empty: list[Path] = []
    for path in given:
        if path.is_dir():
            images, passed_over = walk_images(path)
            if skipped is not None:
                skipped.extend(item for item in passed_over if item[1] == "not an image file")
            empty += [] if images else [path]
            found.extend(images or [path])  # the folder itself: its row says it held no image
        elif _is_manifest(path):
            _require_exists(path)  # a manifest lists the inputs; without it there is nothing to report per row
            found.extend(manifest_paths(path, columns))
        else:
            found.append(path)
    if empty and all(p in empty or p in missing for p in found):  # nothing at all to predict on
        raise InvalidInputError(f"no image files found in {empty[0].name}", "check the folder, or pass image files")
    return list(dict.fromkeys(found))  # drop repeats, keep first-seen order

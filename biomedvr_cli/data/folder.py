"""Class-per-folder image trees, optionally inside ``train/``, ``val/``, ``test/`` folders."""

from __future__ import annotations

from pathlib import Path

from biomedvr_cli.data.files import file_identity, is_hidden, is_image_file, printable_path, walk_images
from biomedvr_cli.data.labels import canonical_label, check_distinct_labels, respelt_notice
from biomedvr_cli.data.records import ImageRecord, ImageSource
from biomedvr_cli.data.splits import normalise_split
from biomedvr_cli.errors import InvalidInputError

_LAYOUT_HINT = "put the images in one subfolder per class, e.g. images/benign/001.png and images/malignant/002.png"


class _Listing:
    """Records, class names and skipped files gathered while walking one tree."""

    def __init__(self, require_labels: bool) -> None:
        self.require_labels = require_labels
        self.records: list[ImageRecord] = []
        self.classes: set[str] = set()
        self.skipped: list[tuple[Path, str]] = []
        self.spellings: dict[str, set[str]] = {}  # class -> the folder names read as it
        self.identities: dict[Path, tuple[int, int]] = {}  # image -> (device, inode), from the listing

    def add_level(self, folder: Path, split: str | None) -> None:
        """Add ``folder/<class>/**`` images; loose files in ``folder`` have no class."""
        self.add_classes(*self.list_level(folder), split)

    def add_classes(self, subdirs: list[Path], loose: list[Path], split: str | None) -> None:
        """Add the images of each class folder, then the loose files."""
        for class_dir in subdirs:
            name = _class_name(class_dir)
            # A class folder without images still names a class: sampling then says so clearly.
            self.classes.add(name)
            self.spellings.setdefault(name, set()).add(class_dir.name)
            images, passed_over = walk_images(class_dir, self.identities)
            self.skipped.extend(passed_over)
            self.records.extend(ImageRecord(path=p, label=name, split=split) for p in images)
        self.add_loose(loose, split)

    def add_loose(self, loose: list[Path], split: str | None) -> None:
        """Files outside any class folder: unlabelled records when allowed, else reported."""
        for path in loose:
            if not is_image_file(path):
                # Sidecar files next to the class folders (attributes.json, classes.txt, a README) are expected.
                continue
            if self.require_labels:
                self.skipped.append((path, "not inside a class folder"))
            else:
                self.records.append(ImageRecord(path=path, label=None, split=split))

    def list_level(self, folder: Path) -> tuple[list[Path], list[Path]]:
        """Visible subfolders and files of one folder, sorted; hidden entries are reported."""
        from biomedvr_cli.atomic import is_own_lock

        subdirs: list[Path] = []
        files: list[Path] = []
        for entry in sorted(folder.iterdir()):
            if is_hidden(entry.name):
                if not is_own_lock(entry):  # this run's lock beside an output written here
                    self.skipped.append((entry, "hidden folder" if entry.is_dir() else "hidden file"))
            elif entry.is_dir():
                subdirs.append(entry)
            else:
                files.append(entry)
        return subdirs, files


def _class_name(folder: Path) -> str:
    """A class folder's name in canonical form (``data.labels``); it must be text: it is stored in adapters and printed."""
    name = folder.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in the name came back as surrogate escapes
        raise InvalidInputError(
            f'class folder "{printable_path(name)}" has a name that is not valid UTF-8',
            "rename the folder to the class name in plain text (class names are stored in the adapter)",
        ) from None
    return canonical_label(name) or name


def _each_file_once(records: list[ImageRecord], skipped: list[tuple[Path, str]], where: str,
                    identities: dict[Path, tuple[int, int]]) -> list[ImageRecord]:
    """Each file once, however many links lead to it (a linked folder, a link to an image, a hard link).
    Reached again with the same class and split it is skipped; under another class or split it is an
    error, as a manifest row listed twice is: one image with two labels, or in train and test."""
    first: dict[tuple[int, int] | str, ImageRecord] = {}
    kept: list[ImageRecord] = []
    for record in records:
        key = identities.get(record.path) or file_identity(record.path, str(record.path))
        earlier = first.setdefault(key, record)
        if earlier is record:
            kept.append(record)
            continue
        for field, what in (("label", "class folders"), ("split", "split folders")):
            if getattr(earlier, field) != getattr(record, field):
                names = dict.fromkeys(printable_path(r.path.name) for r in (earlier, record))
                raise InvalidInputError(
                    f"{where}: one image file is reached from two {what} ({getattr(earlier, field) or 'none'} and "
                    f"{getattr(record, field) or 'none'}) through a link: {' and '.join(names)}",
                    "remove the link (or the linked folder), so that each image sits in one class and split")
        skipped.append((record.path, "reached again through a link"))
    return kept


def read_folder_tree(root: Path, *, require_labels: bool = True) -> ImageSource:
    """List a class-per-folder tree.

    Layouts understood:
    - ``root/<class>/**/<image>``: the class is the first-level folder name;
    - ``root/<split>/<class>/**/<image>`` when every visible first-level folder is a split
      name (train, val, test and common spellings such as validation): sets ``split``.
    Images lying directly in ``root`` (or in a split folder) have no class: they become
    unlabelled records when ``require_labels`` is False and are skipped otherwise.
    """
    listing = _Listing(require_labels)
    subdirs, loose = listing.list_level(root)
    splits = {d: normalise_split(d.name) for d in subdirs}
    split_dirs = [d for d in subdirs if splits[d] is not None]

    if subdirs and len(split_dirs) == len(subdirs):
        for split_dir in split_dirs:
            listing.add_level(split_dir, splits[split_dir])
        listing.add_loose(loose, None)
    elif split_dirs:
        others = [d.name for d in subdirs if splits[d] is None]
        raise InvalidInputError(
            f"{root.name} mixes split folders ({', '.join(d.name for d in split_dirs)}) "
            f"with class folders ({', '.join(others[:3])})",
            "put the class folders inside train/, val/ and test/, or rename the split-named folder",
        )
    else:
        listing.add_classes(subdirs, loose, None)

    listing.records = _each_file_once(listing.records, listing.skipped, root.name, listing.identities)
    if not listing.records:
        if require_labels and not listing.classes:
            raise InvalidInputError(f"{root.name} holds no class folders with images", _LAYOUT_HINT)
        raise InvalidInputError(f"no image files found in {root.name}", _LAYOUT_HINT)
    check_distinct_labels(listing.classes, root.name, "class folder")
    respelt = respelt_notice(listing.spellings, root.name, "class folder")
    return ImageSource(records=listing.records, classes=sorted(listing.classes), skipped=listing.skipped,
                       notices=[respelt] if respelt else [])

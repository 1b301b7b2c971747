"""Folder trees, CSV manifests and prediction inputs (biomedvr_cli.data.sources)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from biomedvr_cli.data import CsvColumns, ImageRecord, collect_inputs, is_image_file, open_source
from biomedvr_cli.errors import InvalidInputError


def _png(path: Path, colour: tuple[int, int, int] = (200, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    _png(root / "malignant" / "m1.png")
    _png(root / "benign" / "b2.png")
    _png(root / "benign" / "sub" / "deeper" / "b1.jpg")
    _png(root / "benign" / "._b2.png")  # AppleDouble twin
    _write(root / "benign" / ".DS_Store", "x")
    _write(root / "benign" / "notes.txt", "not an image")
    _png(root / "benign" / ".thumbs" / "t.png")
    _png(root / "__MACOSX" / "benign" / "._b2.png")
    _png(root / ".cache" / "c.png")
    _png(root / "loose.png")
    return root


def test_folder_tree_lists_classes_sorted_and_skips_hidden(tree: Path) -> None:
    source = open_source(tree)
    assert source.classes == ["benign", "malignant"]
    names = [(r.label, r.path.name) for r in source.records]
    assert names == [("benign", "b2.png"), ("benign", "b1.jpg"), ("malignant", "m1.png")]
    assert all(r.split is None and r.group is None for r in source.records)
    reasons = {p.name: why for p, why in source.skipped}
    assert reasons["__MACOSX"] == "hidden folder"
    assert reasons[".cache"] == "hidden folder"
    assert reasons[".thumbs"] == "hidden folder"
    assert reasons["._b2.png"] == "hidden file"
    assert reasons[".DS_Store"] == "hidden file"
    assert reasons["notes.txt"] == "not an image file"
    assert reasons["loose.png"] == "not inside a class folder"


def test_folder_without_labels_keeps_loose_images(tree: Path) -> None:
    source = open_source(tree, require_labels=False)
    loose = [r for r in source.records if r.label is None]
    assert [r.path.name for r in loose] == ["loose.png"]


def test_split_layout_sets_split(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _png(root / "train" / "a" / "1.png")
    _png(root / "train" / "b" / "2.png")
    _png(root / "Validation" / "a" / "3.png")
    _png(root / "test" / "b" / "4.png")
    _png(root / "test" / "c" / "5.png")
    source = open_source(root)
    assert source.classes == ["a", "b", "c"]
    assert {(r.path.name, r.label, r.split) for r in source.records} == {
        ("1.png", "a", "train"),
        ("2.png", "b", "train"),
        ("3.png", "a", "val"),
        ("4.png", "b", "test"),
        ("5.png", "c", "test"),
    }


def test_mixed_split_and_class_folders_is_an_error(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "a" / "1.png")
    _png(tmp_path / "benign" / "2.png")
    with pytest.raises(InvalidInputError, match="mixes split folders"):
        open_source(tmp_path)


def test_empty_class_folder_still_names_a_class(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "1.png")
    (tmp_path / "b").mkdir()
    assert open_source(tmp_path).classes == ["a", "b"]


@pytest.mark.parametrize("setup", ["empty", "no-images", "missing", "other-file"])
def test_bad_sources_fail_with_hint(tmp_path: Path, setup: str) -> None:
    target = tmp_path / "data"
    if setup == "empty":
        target.mkdir()
    elif setup == "no-images":
        _write(target / "a" / "readme.txt", "x")
    elif setup == "other-file":
        target = _write(tmp_path / "list.txt", "a.png")
    with pytest.raises(InvalidInputError) as info:
        open_source(target)
    assert info.value.exit_code == 3
    assert info.value.hint
    assert str(tmp_path) not in info.value.one_line()


def test_csv_manifest_relative_paths_split_and_group(tmp_path: Path) -> None:
    _png(tmp_path / "imgs" / "1.png")
    _png(tmp_path / "imgs" / "2.png")
    _png(tmp_path / "imgs" / "3.png")
    absolute = _png(tmp_path / "elsewhere" / "4.png")
    csv_path = _write(
        tmp_path / "meta" / ".." / "manifest.csv",
        "path,label,split,group\n"
        "imgs/1.png,benign,train,P1\n"
        "imgs/2.png,malignant,Validation,P2\n"
        "\n"
        "imgs/3.png,benign,,\n"
        f"{absolute},malignant,test,P3\n",
    )
    source = open_source(csv_path)
    assert source.classes == ["benign", "malignant"]
    # Group ids are comparison keys, read ignoring case and spacing (never shown).
    assert [(r.path, r.label, r.split, r.group) for r in source.records] == [
        (tmp_path / "imgs" / "1.png", "benign", "train", "p1"),
        (tmp_path / "imgs" / "2.png", "malignant", "val", "p2"),
        (tmp_path / "imgs" / "3.png", "benign", None, None),
        (absolute, "malignant", "test", "p3"),
    ]


def test_csv_custom_columns_semicolon_bom_and_patient_id(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    csv_path = tmp_path / "m.csv"
    csv_path.write_bytes("\ufeffFile;Diagnosis;Patient_ID\na.png;nevus;17\nb.png;melanoma;18\n".encode())
    source = open_source(csv_path, columns=CsvColumns(path="file", label="diagnosis"))
    assert [(r.path.name, r.label, r.group) for r in source.records] == [
        ("a.png", "nevus", "17"),
        ("b.png", "melanoma", "18"),
    ]


def test_csv_custom_group_and_split_columns(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _write(tmp_path / "m.csv", "path,label,fold,subject\na.png,x,TEST,s1\n")
    source = open_source(tmp_path / "m.csv", columns=CsvColumns(split="fold", group="subject"))
    assert source.records == [ImageRecord(tmp_path / "a.png", "x", "test", "s1")]
    with pytest.raises(InvalidInputError, match="no 'site' column"):
        open_source(tmp_path / "m.csv", columns=CsvColumns(group="site"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,label\na.png,x\n", "no 'path' column"),
        ("path,class\na.png,x\n", "no 'label' column"),
        ("path,label,split\na.png,x,holdout\n", "unknown split 'holdout'"),
        ("path,label\na.png,\n", "line 2: a.png has no label"),
        ("path,label\n,x\n", "line 2: the path is empty"),
        ("path,label\nmissing.png,x\n", "none of the 1 files"),
        ("path,label\na.png,x\na.png,y\n", "listed again with another label"),
        ("", "is empty"),
    ],
)
def test_csv_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    _png(tmp_path / "a.png")
    _write(tmp_path / "m.csv", text)
    with pytest.raises(InvalidInputError, match=message) as info:
        open_source(tmp_path / "m.csv")
    assert info.value.hint


def test_csv_skips_missing_duplicate_and_non_image_rows(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _write(tmp_path / "n.txt", "x")
    _write(tmp_path / "m.csv", "path,label\na.png,x\n./a.png,x\ngone.png,x\nn.txt,x\n")
    source = open_source(tmp_path / "m.csv")
    assert [r.path.name for r in source.records] == ["a.png"]
    assert [(p.name, why) for p, why in source.skipped] == [
        ("a.png", "listed more than once in the manifest"),
        ("gone.png", "listed in the manifest but not found"),
        ("n.txt", "not an image file"),
    ]


def test_csv_without_labels_when_not_required(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _write(tmp_path / "m.csv", "path\na.png\n")
    source = open_source(tmp_path / "m.csv", require_labels=False)
    assert source.records == [ImageRecord(tmp_path / "a.png", None)]
    assert source.classes == []


def test_is_image_file_by_extension_and_dicom_magic(tmp_path: Path) -> None:
    assert is_image_file(Path("x/scan.PNG"))
    assert is_image_file(Path("scan.tiff"))
    assert not is_image_file(_write(tmp_path / "notes.txt", "hello"))
    dicom_like = tmp_path / "IM000001"
    dicom_like.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    assert is_image_file(dicom_like)


def test_collect_inputs_files_folders_and_csv(tmp_path: Path) -> None:
    one = _png(tmp_path / "one.png")
    odd = _write(tmp_path / "odd.bin", "x")  # files are taken as given; decoding reports them
    _png(tmp_path / "dir" / "b.png")
    _png(tmp_path / "dir" / "a" / "c.jpg")
    _png(tmp_path / "dir" / ".hidden.png")
    _write(tmp_path / "dir" / "readme.md", "x")
    _write(tmp_path / "list.csv", "path\nmissing.png\none.png\ndir/b.png\n")
    found = collect_inputs([one, odd, tmp_path / "dir", tmp_path / "list.csv"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "one.png",
        "odd.bin",
        "dir/a/c.jpg",
        "dir/b.png",
        "missing.png",  # kept, so that decoding reports it
    ]
    _write(tmp_path / "gone.csv", "path,label\ngone.png,x\n")
    with pytest.raises(InvalidInputError, match="none of the 1 files"):
        collect_inputs([tmp_path / "gone.csv"])
    with pytest.raises(InvalidInputError, match="does not exist"):
        collect_inputs([tmp_path / "nope.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no image files"):
        collect_inputs([tmp_path / "empty"])

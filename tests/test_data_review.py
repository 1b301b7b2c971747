"""Defects a hostile review of the data path of fit / eval / predict found (2026-12-07, session 12)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.data.manifest import read_manifest, manifest_paths
from biomedvr_cli.errors import InvalidInputError

runner = CliRunner()


def _png(path: Path, colour: tuple[int, int, int] = (200, 20, 20)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)
    return path


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    for i in range(3):
        _png(tmp_path / "a" / f"a{i}.png", (200, 20, 20))
        _png(tmp_path / "b" / f"b{i}.png", (20, 20, 200))
    return tmp_path


def test_blank_lines_above_the_header_are_ignored(images: Path) -> None:
    (images / "m.csv").write_text("\n,,\n\npath,label\na/a0.png,red\nb/b0.png,blue\n")
    source = read_manifest(images / "m.csv")
    assert sorted(r.label for r in source.records) == ["blue", "red"]


def test_an_excel_sep_line_names_the_delimiter(images: Path) -> None:
    (images / "m.csv").write_text("sep=;\npath;label;note\na/a0.png;red;x,y\nb/b0.png;blue;\n")
    source = read_manifest(images / "m.csv")
    assert sorted(r.label for r in source.records) == ["blue", "red"]
    # A "sep=" line naming a delimiter that is not the file's leaves the header unfound, said plainly.
    (images / "m.csv").write_text("SEP=,\npath;label\na/a0.png;red\n")
    with pytest.raises(InvalidInputError, match="no 'path' column"):
        read_manifest(images / "m.csv")


def test_a_manifest_with_lines_ending_in_cr_only_is_read(images: Path) -> None:
    (images / "m.csv").write_bytes(b"path,label\ra/a0.png,red\rb/b0.png,blue\r")
    assert len(read_manifest(images / "m.csv").records) == 2


def test_one_file_spelt_two_ways_is_one_row_and_two_labels_are_an_error(images: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(images.parent)
    os.symlink(images / "a", images / "alias")
    absolute = images / "a" / "a0.png"
    (images / "m.csv").write_text(f"path,label\na/a0.png,red\n{absolute},red\nalias/a0.png,red\nb/b0.png,blue\n")
    relative = Path(images.name) / "m.csv"  # the manifest named relatively, as typed in a shell
    source = read_manifest(relative)
    assert len(source.records) == 2 and sum(why.startswith("listed more than once") for _, why in source.skipped) == 2
    assert len(manifest_paths(relative)) == 2
    (images / "m.csv").write_text("path,label\na/a0.png,red\nalias/a0.png,blue\n")
    with pytest.raises(InvalidInputError, match="listed again with another label"):
        read_manifest(relative)


def test_dot_dot_after_a_link_names_the_file_the_system_opens(images: Path) -> None:
    (images / "csvdir").mkdir()
    (images / "X" / "sub").mkdir(parents=True)
    _png(images / "X" / "a.png", (1, 2, 3))
    _png(images / "csvdir" / "a.png", (200, 200, 200))
    os.symlink("../X/sub", images / "csvdir" / "lnk")
    (images / "csvdir" / "m.csv").write_text("path\nlnk/../a.png\n")
    (listed,) = manifest_paths(images / "csvdir" / "m.csv")
    assert os.path.samefile(listed, images / "X" / "a.png")


def test_a_nul_byte_in_a_manifest_path_is_named_by_line(images: Path) -> None:
    (images / "m.csv").write_bytes(b"path,label\na/a0.png,red\nx\x00y.png,red\n")
    with pytest.raises(InvalidInputError, match="line 3: the path holds a NUL byte"):
        read_manifest(images / "m.csv")


def test_linked_sub_folders_are_walked_once_and_loops_are_reported(tmp_path: Path) -> None:
    from biomedvr_cli.data.files import walk_images

    store = tmp_path / "store"
    _png(store / "x.png")
    root = tmp_path / "red"
    root.mkdir()
    os.symlink(store, root / "linked")
    os.symlink(root, root / "linked-back")  # a loop
    found, skipped = walk_images(root)
    assert [p.name for p in found] == ["x.png"]
    assert any("link loop" in why for _, why in skipped)


def test_a_named_pipe_without_an_extension_is_passed_over_not_waited_on(tmp_path: Path) -> None:
    from biomedvr_cli.data.files import walk_images

    _png(tmp_path / "red" / "r.png")
    os.mkfifo(tmp_path / "red" / "notes")
    result: list = []
    walker = threading.Thread(target=lambda: result.append(walk_images(tmp_path / "red")), daemon=True)
    walker.start()
    walker.join(timeout=20)
    assert result, "walk_images blocked on the pipe"
    found, skipped = result[0]
    assert [p.name for p in found] == ["r.png"] and [p.name for p, _ in skipped] == ["notes"]


@pytest.mark.parametrize("header", ["PATIENTID", "patientid", "PatientID", "pat_id", "MedicalRecordNumber", "lesion_id"])
def test_id_columns_are_found_whatever_their_case(header: str) -> None:
    from biomedvr_cli.data.idcolumns import id_columns

    assert [c.name for c in id_columns(["path", "label", header], {0, 1})] == [header]


@pytest.mark.parametrize("header", ["patient_age", "PatientSex", "image_id", "label", "study", "case"])
def test_attribute_columns_are_not_ids(header: str) -> None:
    from biomedvr_cli.data.idcolumns import id_columns

    assert id_columns(["path", header], {0}) == []


@pytest.fixture()
def adapter(tiny_colour_adapter: tuple[Path, Path, str]) -> tuple[Path, Path, str]:
    return tiny_colour_adapter


def test_eval_says_which_rows_it_left_out_and_when_no_test_image_is_left(adapter, tmp_path: Path) -> None:
    root, out, spec = adapter
    rows = [f"{p.relative_to(root)},{p.parent.name},{p.parent.parent.name}" for p in sorted(root.rglob("*.png"))]
    manifest = root / "gone.csv"
    manifest.write_text("path,label,split\n" + "\n".join(r.replace("test/", "gone/") for r in rows) + "\n")
    result = runner.invoke(app, ["eval", str(manifest), "--adapter", str(out), "--backbone", spec, "--json"])
    assert result.exit_code == 0, result.stderr
    warnings = " ".join(json.loads(result.stdout)["warnings"])
    assert "file(s) were skipped" in warnings and "no test image was found" in warnings


def test_predict_csv_columns_do_not_depend_on_which_images_decode(adapter, tmp_path: Path) -> None:
    root, out, spec = adapter
    (tmp_path / "empty.png").write_bytes(b"")
    good = next(root.rglob("*.png"))
    headers = []
    for files in ([tmp_path / "empty.png"], [tmp_path / "empty.png", good]):
        result = runner.invoke(app, ["predict", *map(str, files), "--adapter", str(out), "--backbone", spec,
                                     "--format", "csv"])
        headers.append(result.stdout.splitlines()[0])
    assert headers[0] == headers[1] and "outlier_score" in headers[0]


def test_a_class_emptied_by_unreadable_files_counts_only_readable_ones(tmp_path: Path) -> None:
    from biomedvr_cli.data.decode import DecodeOptions
    from biomedvr_cli.data.records import ImageRecord
    from biomedvr_cli.pipeline.fit_inputs import draw_readable

    records = []
    for i in range(6):
        path = _png(tmp_path / "red" / f"r{i}.png")
        path.write_bytes(path.read_bytes()[:60])  # every red image truncated
        records.append(ImageRecord(path=path, label="red"))
        records.append(ImageRecord(path=_png(tmp_path / "blue" / f"b{i}.png", (0, 0, 255)), label="blue"))
    with pytest.raises(InvalidInputError, match="class 'red' has 0 images to draw from") as raised:
        draw_readable(records, ["blue", "red"], 2, seed=0, val_shots=None, allow_fewer=False, size=16,
                      options=DecodeOptions())
    assert "--allow-fewer cannot draw from none" in raised.value.hint  # not a fix that cannot work


def test_group_ids_that_differ_only_in_case_or_spacing_are_one_group(images: Path) -> None:
    (images / "m.csv").write_text("path,label,group\na/a0.png,red,P-017\na/a1.png,red,p-017 \nb/b0.png,blue,P-018\n")
    groups = [r.group for r in read_manifest(images / "m.csv").records]
    assert groups[0] == groups[1] != groups[2]


def test_an_empty_folder_among_predict_inputs_gets_its_row_and_the_rest_are_predicted(tiny_colour_adapter,
                                                                                      tmp_path: Path) -> None:
    root, adapter, spec = tiny_colour_adapter
    good = next((root / "test").rglob("*.png"))
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["predict", str(good), str(tmp_path / "empty"), "--adapter", str(adapter),
                                      "--backbone", spec, "--json"])
    assert result.exit_code == 3, result.stderr
    rows = json.loads(result.stdout)["predictions"]
    assert "prediction" in rows[0] and "a folder, not an image file" in rows[1]["error"]
    # Nothing at all to predict on: refused before the model is loaded, as before.
    alone = CliRunner().invoke(app, ["predict", str(tmp_path / "empty"), str(tmp_path / "gone.png"),
                                     "--adapter", str(adapter), "--backbone", spec])
    assert alone.exit_code == 3 and "no image files found in empty" in alone.stderr


def test_one_image_listed_with_two_splits_is_an_error(images: Path) -> None:
    (images / "m.csv").write_text("path,label,split\na/a0.png,red,train\nb/b0.png,blue,test\na/a0.png,red,test\n")
    with pytest.raises(InvalidInputError, match="listed again with another split \\(train, then test\\)"):
        read_manifest(images / "m.csv")
    (images / "m.csv").write_text("path,label,split\na/a0.png,red,train\nb/b0.png,blue,test\na/a0.png,red,train\n")
    assert len(read_manifest(images / "m.csv").records) == 2

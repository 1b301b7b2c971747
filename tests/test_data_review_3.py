"""Third hostile review of the image path (session 14): every reproduced defect, with its fix."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.conftest import make_color_tree
from tests.test_bad_inputs import World, runner, world  # noqa: F401  (world: the fixture)

from biomedvr_cli.cli.app import app
from biomedvr_cli.data.folder import read_folder_tree
from biomedvr_cli.data.manifest import read_manifest
from biomedvr_cli.data.records import CsvColumns
from biomedvr_cli.errors import InvalidInputError


def test_a_linked_class_folder_inside_another_is_one_image_with_two_labels(tmp_path: Path) -> None:
    tree = make_color_tree(tmp_path / "t", per_class=2, size=8)
    os.symlink("../beta cell", tree / "alpha cell" / "link")
    with pytest.raises(InvalidInputError, match="reached from two class folders .alpha cell and beta cell. through a link"):
        read_folder_tree(tree)


def test_a_link_to_the_folder_above_is_refused_not_walked_as_one_class(tmp_path: Path) -> None:
    tree = make_color_tree(tmp_path / "t", per_class=2, size=8)
    os.symlink("..", tree / "gamma cell" / "up")
    with pytest.raises(InvalidInputError, match="reached from two class folders"):
        read_folder_tree(tree)


def test_a_test_image_linked_to_a_training_image_is_a_leak(tmp_path: Path) -> None:
    tree = make_color_tree(tmp_path / "t", per_class=2, size=8, splits=("train", "test"))
    os.symlink(tree / "train" / "alpha cell" / "img00.png", tree / "test" / "alpha cell" / "linked.png")
    with pytest.raises(InvalidInputError, match="reached from two split folders .test and train."):
        read_folder_tree(tree)


def test_a_hard_link_is_the_same_file_in_a_tree_and_in_a_manifest(tmp_path: Path) -> None:
    tree = make_color_tree(tmp_path / "t", per_class=2, size=8)
    os.link(tree / "alpha cell" / "img00.png", tree / "alpha cell" / "again.png")
    source = read_folder_tree(tree)
    assert len(source.records) == 6 and "1 reached again through a link" in source.skipped_summary()
    os.link(tree / "beta cell" / "img00.png", tmp_path / "hard.png")
    (tmp_path / "m.csv").write_text("path,label\nt/beta cell/img00.png,beta cell\nhard.png,alpha cell\n")
    with pytest.raises(InvalidInputError, match="listed again with another label"):
        read_manifest(tmp_path / "m.csv")


def test_patient_ids_in_other_unicode_forms_are_one_group(tmp_path: Path) -> None:
    tree = make_color_tree(tmp_path / "t", per_class=2, size=8)
    rows = ["path,label,PatientID"]
    for i, id_ in enumerate(["xxx-Jos\u00e9", "xxx-Jose\u0301", "P\u200b-017", "\uff30-017 "]):
        rows.append(f"t/alpha cell/img0{i % 2}.png,alpha cell,{id_}" if i < 2 else f"t/beta cell/img0{i % 2}.png,beta cell,{id_}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    records = read_manifest(tmp_path / "m.csv", CsvColumns(group="PatientID")).records
    assert len({r.group for r in records if r.label == "alpha cell"}) == 1
    assert len({r.group for r in records if r.label == "beta cell"}) == 1


def test_a_sep_line_then_a_blank_line_then_the_header(tmp_path: Path) -> None:
    make_color_tree(tmp_path / "t", per_class=1, size=8)
    (tmp_path / "m.csv").write_text("sep=;\n\n\npath;label\nt/alpha cell/img00.png;alpha cell\n"
                                    "t/beta cell/img00.png;beta cell\n")
    assert [r.label for r in read_manifest(tmp_path / "m.csv").records] == ["alpha cell", "beta cell"]
    (tmp_path / "only.csv").write_text("sep=;\n\n")
    with pytest.raises(InvalidInputError, match="has a sep= line but no header row after it"):
        read_manifest(tmp_path / "only.csv")


def test_jfif_files_are_jpegs_and_predict_says_what_a_folder_passed_over(world: World, tmp_path: Path) -> None:  # noqa: F811
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(world.good).convert("RGB").save(folder / "web.jfif", "JPEG")
    (folder / "notes.heic").write_bytes(b"not decodable here")
    (folder / ".DS_Store").write_bytes(b"finder")
    result = runner.invoke(app, ["predict", str(folder), "--adapter", str(world.adapter), "--backbone", world.spec,
                                 "--format", "csv"])
    assert result.exit_code == 0, result.stderr
    assert "web.jfif" in result.stdout and "notes.heic" not in result.stdout
    assert "1 file(s) were skipped: 1 not an image file inside the folders given" in result.stderr


def test_ctrl_c_after_the_output_is_written_says_it_is_kept(world: World, tmp_path: Path,  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import biomedvr_cli.cli.console as console

    real = console.info

    def interrupted_after_writing(message: str, *args: object, **kwargs: object) -> None:
        if message.startswith("wrote "):
            raise KeyboardInterrupt
        real(message, *args, **kwargs)

    monkeypatch.setattr(console, "info", interrupted_after_writing)
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(world.good), "--adapter", str(world.adapter), "--backbone", world.spec,
                                 "--out", str(out)])
    assert result.exit_code == 130
    assert "p.csv had been written in full before it and is kept" in result.stderr
    assert "partial outputs were removed" not in result.stderr
    assert out.read_text().startswith("file,prediction")


def test_plots_on_a_full_disk_leave_neither_plot(world: World, tmp_path: Path,  # noqa: F811
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    real, calls = Figure.savefig, []

    def second_fails(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", second_fails)
    plots = tmp_path / "plots"
    result = runner.invoke(app, ["eval", str(world.tree), "--adapter", str(world.adapter), "--backbone", world.spec,
                                 "--plots", str(plots)])
    assert result.exit_code == 3 and "nothing was written" in result.stderr
    assert not plots.exists() or list(plots.iterdir()) == []


@pytest.mark.parametrize("header", ["path,path,label", "path,label,Label", "Path,label,PATH"])
def test_a_column_named_twice_is_refused_not_guessed(tmp_path: Path, header: str) -> None:
    make_color_tree(tmp_path / "t", per_class=1, size=8)
    cells = {"path,path,label": "t/alpha cell/img00.png,t/beta cell/img00.png,alpha cell",
             "path,label,Label": "t/alpha cell/img00.png,alpha cell,beta cell",
             "Path,label,PATH": "t/alpha cell/img00.png,alpha cell,t/beta cell/img00.png"}[header]
    (tmp_path / "m.csv").write_text(f"{header}\n{cells}\n")
    with pytest.raises(InvalidInputError, match="has 2 columns named"):
        read_manifest(tmp_path / "m.csv")


def test_a_tree_a_thousand_folders_deep_is_walked(tmp_path: Path) -> None:
    """Python 3.11's os.walk recursed once per level: 1,100 levels (a 2.2 KB path) failed the run."""
    from PIL import Image

    from biomedvr_cli.data.files import walk_images

    deep = tmp_path / "deep"
    deep.mkdir()
    here = deep
    for _ in range(1100):
        here = here / "d"
        os.mkdir(here)
    Image.new("RGB", (4, 4)).save(here / "x.png")
    try:
        images, skipped = walk_images(deep)
        assert images == [here / "x.png"] and skipped == []
    finally:  # pytest's clean-up (shutil.rmtree) recurses once per level too: take it down from the bottom
        (here / "x.png").unlink()
        while here != deep:
            here.rmdir()
            here = here.parent

"""Second read of session 14's fixes (a code review of the change): every reproduced problem."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import make_color_tree
from tests.test_data_review_dicom import _dicom, _jpeg

from biomedvr_cli.attributes.privacy import find_identifier
from biomedvr_cli.attributes.schema import is_technical_value
from biomedvr_cli.data import DecodeOptions, decode_image
from biomedvr_cli.errors import InvalidInputError


@pytest.mark.parametrize("text", [
    "patient Creutzfeldt-Jakob Disease", "name: Guillain-Barré Syndrome", "patient Hodgkin Lymphoma",
    "counts of 5 10 2000 per field", "stage 2019 1 2", "ratio (120) 130 1400", "HbS^β0 thalassemia"])
def test_eponyms_counts_and_powers_are_not_identifiers(text: str) -> None:
    assert find_identifier(text) is None


@pytest.mark.parametrize("text", ["patient Jean-Luc Picard", "seen 03 04 2021", "(555) 123-4567", "Doe^Jane",
                                  "scan.jpe", "slide.jp2"])
def test_the_names_dates_and_files_they_must_still_catch(text: str) -> None:
    assert find_identifier(text) is not None


@pytest.mark.parametrize(("model", "ok"), [
    ("arn:aws:bedrock:us-east-1:123456789012:custom-model/anthropic.claude-v2:1/ab12cd34ef56", True),
    ("my-finetune-2024-08-06", True), ("claude-haiku-4-5@20251001", True),
    ("jane.doe@stmarys.nhs.uk", False), ("MRN12345678", False), ("data/pt_0042/scan.dcm", False)])
def test_model_ids_with_dates_and_paths_are_ids(model: str, ok: bool) -> None:
    assert is_technical_value(model) is ok


def test_a_large_dicom_jpeg_decodes_while_other_threads_open_images(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening an image sets Pillow's global limit for a moment; a DICOM frame above Pillow's own
    limit must not read that passing value and then meet the default again (it failed 1 in 8)."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    dicom = _dicom(tmp_path / "big.dcm", rows=48, columns=64, pixels=encapsulate([_jpeg(64, 48)]),
                   syntax=JPEGBaseline8Bit)
    png = tmp_path / "p.png"
    Image.new("RGB", (20, 20)).save(png)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    stop, failures = threading.Event(), []

    def open_pngs() -> None:
        while not stop.is_set():
            decode_image(png, DecodeOptions(max_pixels=5000))

    threads = [threading.Thread(target=open_pngs) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        for _ in range(300):
            try:
                decode_image(dicom, DecodeOptions(max_pixels=5000))
            except InvalidInputError as exc:
                failures.append(exc)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(previous)
    assert failures == [] and Image.MAX_IMAGE_PIXELS == 100


def test_a_link_into_another_split_is_named_by_both_names(tmp_path: Path) -> None:
    from biomedvr_cli.data.folder import read_folder_tree

    tree = make_color_tree(tmp_path / "t", per_class=1, size=8, splits=("train", "test"))
    os.symlink(tree / "train" / "alpha cell" / "img00.png", tree / "test" / "alpha cell" / "link.png")
    with pytest.raises(InvalidInputError, match="through a link: (link.png and img00.png|img00.png and link.png)"):
        read_folder_tree(tree)


def test_predict_counts_only_files_that_are_not_images(tmp_path: Path) -> None:
    from biomedvr_cli.data.sources import collect_inputs

    (tmp_path / "a").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "x.png")
    os.symlink("..", tmp_path / "a" / "up")
    (tmp_path / "notes.txt").write_text("n")
    skipped: list = []
    assert collect_inputs([tmp_path], skipped=skipped) == [tmp_path / "a" / "x.png"]
    assert [why for _, why in skipped] == ["not an image file"]


def test_only_reserved_outputs_are_named_after_an_interrupt(tmp_path: Path) -> None:
    from biomedvr_cli import atomic

    atomic.forget_committed()
    atomic.write_text_atomic(tmp_path / "cache-entry.json", "{}", force=False)
    with atomic.reserve_output(tmp_path / "out.csv", force=False):
        atomic.write_text_atomic(tmp_path / "out.csv", "x", force=True)
    assert [p.name for p in atomic.committed_outputs()] == ["out.csv"]
    atomic.forget_committed()
    assert atomic.committed_outputs() == []


def test_a_runs_own_lock_in_the_image_tree_is_not_a_skipped_hidden_file(tmp_path: Path) -> None:
    from biomedvr_cli import atomic
    from biomedvr_cli.data.folder import read_folder_tree

    tree = make_color_tree(tmp_path / "t", per_class=1, size=8)
    atomic.forget_committed()
    try:
        with atomic.reserve_output(tree / "classes.txt", force=True):
            assert (tree / ".classes.txt.lock").exists()
            assert read_folder_tree(tree).skipped == []
        (tree / ".someone-elses").write_text("x")
        assert [why for _, why in read_folder_tree(tree).skipped] == ["hidden file"]
    finally:
        atomic.forget_committed()

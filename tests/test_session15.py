"""Session 15 fixes: small behaviours found after the hostile reviews of session 14."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from biomedvr_cli.attributes.privacy import find_identifier
from biomedvr_cli.attributes.schema import is_technical_value
from biomedvr_cli.cli.app import app
from biomedvr_cli.data import DecodeOptions, open_source
from biomedvr_cli.method.trust import Assessment
from biomedvr_cli.pipeline.fit_inputs import draw_readable, window_unused
from biomedvr_cli.pipeline.notices import Caution
from biomedvr_cli.pipeline.trust import trust_fields
from tests.conftest import make_color_tree

runner = CliRunner()


def test_outlier_score_is_written_to_six_significant_digits() -> None:
    # float32 scores differ in their last digits with the batch; the written value must not.
    scores = torch.tensor([47.753052, 47.753059, 0.000123456789], dtype=torch.float32)
    assessed = Assessment(torch.full((3, 2), 0.5), outlier_scores=scores, outliers=torch.tensor([False, True, False]))
    written = [trust_fields(assessed, row, ["a", "b"])["outlier_score"] for row in range(3)]
    assert written[0] == written[1] == 47.7531
    assert written[2] == 0.000123457
    assert [trust_fields(assessed, row, ["a", "b"])["outlier"] for row in range(3)] == [False, True, False]


def _png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path


def _dicom(path: Path) -> Path:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 4, 4, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (np.arange(16) * 7).astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_window_for_images_that_are_not_dicom_is_named(tmp_path: Path) -> None:
    png, dcm = _png(tmp_path / "a.png"), _dicom(tmp_path / "b")  # no suffix: found by its marker
    windowed = DecodeOptions(window=(40.0, 400.0))
    assert window_unused([png, dcm], DecodeOptions()) == []  # no window asked: nothing to say
    assert window_unused([dcm], windowed) == []
    (notice,) = window_unused([png, dcm], windowed)
    assert isinstance(notice, Caution) and "1 of 2 image(s) are not DICOM" in notice


def test_fit_draw_names_a_window_it_could_not_apply(tmp_path: Path) -> None:
    root = make_color_tree(tmp_path / "data", per_class=4)
    source = open_source(root)
    split = draw_readable(source.records, source.classes, 2, seed=0, val_shots=1, allow_fewer=False, size=16,
                          options=DecodeOptions(window=(40.0, 400.0)))
    assert any("--window applies to greyscale DICOM only: 9 of 9" in w for w in split.warnings)
    plain = draw_readable(source.records, source.classes, 2, seed=0, val_shots=1, allow_fewer=False, size=16,
                          options=DecodeOptions())
    assert not any("--window" in w for w in plain.warnings)


def test_predict_and_eval_warn_when_the_window_applies_to_no_image(tiny_colour_adapter) -> None:
    root, adapter, spec = tiny_colour_adapter
    image = next((root / "test" / "alpha cell").glob("*.png"))
    result = runner.invoke(app, ["predict", str(image), "--adapter", str(adapter), "--window", "40,400", "--json",
                                 "--backbone", spec])
    assert result.exit_code == 0, result.stderr
    assert "--window applies to greyscale DICOM only: 1 of 1 image(s)" in result.stderr
    result = runner.invoke(app, ["eval", str(root), "--adapter", str(adapter), "--window", "40,400", "--json",
                                 "--backbone", spec])
    assert result.exit_code == 0, result.stderr
    assert "are not DICOM and were read without it" in json.dumps(json.loads(result.stdout)["warnings"])


@pytest.mark.parametrize("text", [
    "jsmith@localhost", "write to jdoe@mailhost", "Mr. de la Cruz", "Dr van Gogh", "Mrs von Trapp",
    "patient Ana dos Santos", "name: de Vries", "1 janvier 1960", "1. Januar 1960", "1 de enero de 1960",
    "born 12 marzo 1988", "1er mars 1960", "3 maart 1975"])
def test_hospital_mail_names_with_particles_and_other_languages_dates_are_caught(text: str) -> None:
    assert find_identifier(text) is not None


@pytest.mark.parametrize("text", [
    "patient de novo AML", "Mayo 2015 criteria", "Mars 2020 mission", "sign de Musset", "stained @ 40x",
    "granules in mai 12 cells", "a van of cells"])
def test_words_like_particles_and_months_alone_are_not_identifiers(text: str) -> None:
    assert find_identifier(text) is None


def test_a_model_version_after_an_at_sign_is_not_an_address() -> None:
    assert is_technical_value("claude-haiku-4-5@20251001")
    assert not is_technical_value("jsmith@localhost")


def test_a_complete_predict_run_names_an_older_partial_file_and_leaves_it(tiny_colour_adapter, tmp_path: Path) -> None:
    root, adapter, spec = tiny_colour_adapter
    out = tmp_path / "preds.csv"
    old = tmp_path / "preds.partial.csv"
    old.write_text("file,prediction\nx.png,alpha cell\n", encoding="utf-8")
    result = runner.invoke(app, ["predict", str(root / "test"), "--adapter", str(adapter), "--backbone", spec,
                                 "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "preds.partial.csv beside it is from an earlier interrupted run" in result.stderr
    assert old.read_text(encoding="utf-8") == "file,prediction\nx.png,alpha cell\n"
    old.unlink()
    result = runner.invoke(app, ["predict", str(root / "test"), "--adapter", str(adapter), "--backbone", spec,
                                 "--out", str(out), "--force"])
    assert result.exit_code == 0 and "interrupted run" not in result.stderr


def test_every_unreadable_file_message_says_how_to_fix_it(tmp_path: Path) -> None:
    from biomedvr_cli.data import InvalidImageError, decode_image

    good = _png(tmp_path / "good.png").read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello", encoding="utf-8")
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    for name in ("empty.png", "text.png", "cut.png", "folder.png", "missing.png", "bad.dcm"):
        with pytest.raises(InvalidImageError) as caught:
            decode_image(tmp_path / name)
        assert caught.value.one_line().startswith(name) and "(fix: " in caught.value.one_line(), name


def test_float_image_infinities_sit_at_the_ends_of_the_range() -> None:
    import numpy as np

    from biomedvr_cli.data.scaling import minmax_to_uint8

    values = np.array([[np.nan, -np.inf, 0.0], [1.0, 2.0, np.inf]], dtype=np.float32)
    assert minmax_to_uint8(values).tolist() == [[0, 0, 0], [128, 255, 255]]
    assert minmax_to_uint8(np.array([np.inf, np.nan, -np.inf], dtype=np.float32)).tolist() == [255, 0, 0]


def test_balanced_accuracy_is_scikit_learns_without_its_warnings() -> None:
    import warnings

    import numpy as np
    from sklearn.metrics import balanced_accuracy_score

    from biomedvr_cli.method.metrics import _balanced_accuracy

    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(1, 30))
        y, pred = rng.integers(0, 4, n), rng.integers(0, 5, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = balanced_accuracy_score(y, pred)
        assert _balanced_accuracy(y, pred) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", ["esc\x1b[31mred.safetensors", "two\nlines.safetensors", "bidi\u202eab.safetensors"])
def test_errors_naming_a_file_stay_one_printable_line(tmp_path: Path, name: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(b"")
    result = runner.invoke(app, ["info", str(bad)])
    assert result.exit_code == 4
    assert result.stderr.count("\n") == 1 and "\x1b" not in result.stderr and "\u202e" not in result.stderr
    assert ("\\x1b[31m" in result.stderr) or ("\\n" in result.stderr) or ("\\u202e" in result.stderr)


def test_an_outlier_auroc_from_a_few_images_comes_with_a_caution(tiny_colour_adapter, tmp_path: Path) -> None:
    from PIL import Image

    root, adapter, spec = tiny_colour_adapter
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (40, 40), (250, 250, 0)).save(other / "one.png")
    result = runner.invoke(app, ["eval", str(root), "--adapter", str(adapter), "--backbone", spec, "--outliers",
                                 str(other), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["metrics"]["outlier_images"] == 1
    assert any("rests on 1 image(s) of another kind" in w for w in report["warnings"])


def test_eval_of_the_test_split_ignores_a_class_only_in_the_train_split(tiny_colour_adapter, tmp_path: Path) -> None:
    import shutil

    root, adapter, spec = tiny_colour_adapter
    tree = tmp_path / "tree"
    shutil.copytree(root, tree)
    shutil.copytree(tree / "train" / "alpha cell", tree / "train" / "delta cell")  # a class the adapter never saw
    result = runner.invoke(app, ["eval", str(tree), "--adapter", str(adapter), "--backbone", spec, "--split", "test",
                                 "--json"])
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(app, ["eval", str(tree), "--adapter", str(adapter), "--backbone", spec, "--split", "all"])
    assert result.exit_code == 3 and "delta cell" in result.stderr

"""Defects a code review of session 15's change found (identifier rules, adapter load, terminal text,
warnings as errors, stored backbone labels, report renames, patient ids, float images); each fixed."""

from __future__ import annotations

import json
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from biomedvr_cli.attributes.privacy import find_identifier
from biomedvr_cli.attributes.schema import is_technical_value
from biomedvr_cli.cli.app import app

runner = CliRunner()


@pytest.mark.parametrize("text", [
    "mitoses@HPF", "nodule@RUL on CT", "signal@T2", "T-cell@CD3+", "Ki-67@hotspot",
    "patient de Quervain tenosynovitis", "patient von Willebrand disease", "name: van Gieson stain",
    "patient la Crosse encephalitis", "Patient Cornelia de Lange syndrome", "patient Brachmann de Lange syndrome",
    "the patient El Tor cholera", "name: El Tor biotype", "1 mai 30 cells"])
def test_clinical_shorthand_and_eponyms_are_not_identifiers(text: str) -> None:
    assert find_identifier(text) is None


@pytest.mark.parametrize("text", [
    "jsmith@localhost", "jdoe@MAILHOST", "patient Ana dos Santos", "name: de Vries", "Mr. de la Cruz",
    "1 de novembro de 1960", "1° gennaio 1960", "patient John Smith", "name: JOHN SMITH"])
def test_hospital_addresses_names_and_dates_are_still_caught(text: str) -> None:
    assert find_identifier(text) is not None


def test_a_model_alias_after_an_at_sign_is_a_model_id() -> None:
    assert is_technical_value("claude-3-5-sonnet@latest") and is_technical_value("my-model@default")
    assert not is_technical_value("jsmith@localhost")


def _rewritten(adapter: Path, out: Path, edit) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(adapter), framework="pt") as handle:
        metadata = dict(handle.metadata())
    metadata.pop("content_sha256", None)  # as an adapter of an earlier biomedvr (no digest)
    config = json.loads(metadata["config"])
    edit(config)
    metadata["config"] = json.dumps(config)
    save_file(load_file(str(adapter)), str(out), metadata=metadata)
    return out


def _first_sentence(config: dict, text: str) -> None:
    bank = next(iter(config["attributes"]["sentences"]))
    config["attributes"]["sentences"][bank][0] = text


def test_stored_identifier_text_is_refused_without_blaming_an_edit(tiny_colour_adapter, tmp_path: Path) -> None:
    _, adapter, _ = tiny_colour_adapter
    bad = _rewritten(adapter, tmp_path / "old.safetensors", lambda c: _first_sentence(c, "seen by Dr. Jones"))
    result = runner.invoke(app, ["info", str(bad)])
    assert result.exit_code == 4 and "adapters must not hold patient data" in result.stderr
    assert "edited" not in result.stderr and "refit it from class names and an attributes file" in result.stderr


def test_a_stored_sentence_longer_than_fit_allows_is_refused_before_any_rule_reads_it(tiny_colour_adapter,
                                                                                        tmp_path: Path) -> None:
    _, adapter, _ = tiny_colour_adapter
    bad = _rewritten(adapter, tmp_path / "long.safetensors", lambda c: _first_sentence(c, "patient" + " " * 5000 + "x"))
    result = runner.invoke(app, ["info", str(bad)])
    assert result.exit_code == 4 and "5,008 characters long (fit stores at most 1000)" in result.stderr


def test_a_stored_tag_is_never_a_local_file_of_that_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.backbones.specs import parse_backbone, stored_label_problem

    monkeypatch.chdir(tmp_path)
    (tmp_path / "openai").write_text("not weights")
    assert stored_label_problem("ViT-B-16:openai") is None
    assert parse_backbone("ViT-B-16:openai", probe_files=False).kind == "tag"
    assert parse_backbone("ViT-B-16:openai").kind == "file"  # on the command line a file of that name is meant


def test_warnings_made_errors_stop_a_python_fit_before_it_writes(tiny_colour_adapter, tmp_path: Path) -> None:
    import biomedvr
    from biomedvr import BiomedVRWarning

    root, _, spec = tiny_colour_adapter
    out = tmp_path / "never.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("error", BiomedVRWarning)
        with pytest.raises(BiomedVRWarning, match="applies to greyscale DICOM only"):
            biomedvr.fit(root / "train", shots=2, backbone=spec, out=out, epochs=1, window="40,400")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_table_cells_are_text_with_control_characters_escaped() -> None:
    from biomedvr_cli.cli.console import cell, printable

    assert cell("a\x1b[31mRED\u202eb.png").plain == "a\\x1b[31mRED\\u202eb.png"
    assert cell("[bold]not markup[/bold]").plain == "[bold]not markup[/bold]"
    assert printable("tag\U000e0001x") == "tag\\U000e0001x"
    assert printable("می\u200cخواهم") == "می\u200cخواهم" and printable("a\u200db") == "a\u200db"
    assert cell(0.123456, ".3f").plain == "0.123" and cell(None).plain == ""


def test_the_predict_table_never_writes_a_file_name_s_escape_raw(tiny_colour_adapter, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    root, adapter, spec = tiny_colour_adapter
    monkeypatch.chdir(tmp_path)  # a short relative path, shown whole in the table
    Path("esc").mkdir()
    shutil.copy(next((root / "test" / "alpha cell").glob("*.png")), Path("esc") / "a\x1b[31mRED\u202eb.png")
    result = runner.invoke(app, ["predict", "esc", "--adapter", str(adapter), "--backbone", spec])
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
    assert "esc/a\\x1b[31mRED\\u202eb.png" in result.stderr


def test_a_signal_during_deferred_renames_arrives_after_them() -> None:
    from biomedvr_cli.atomic import signals_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            signal.raise_signal(signal.SIGINT)
            done.append("rest of the block")
    assert done == ["rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_reports_are_all_renamed_when_ctrl_c_comes_between_two_renames(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from biomedvr_cli.benchmark import report

    report.write_reports(tmp_path, [], [], {"old": True})
    real, calls = os.replace, []

    def interrupted_after_the_second(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", interrupted_after_the_second)
    with pytest.raises(KeyboardInterrupt):
        report.write_reports(tmp_path, [], [], {"new": True})
    assert len(calls) == 4  # every report renamed before the interrupt was let through
    assert json.loads((tmp_path / "summary.json").read_text()) == {"new": True}


@pytest.mark.parametrize("value, key", [(np.int64(7), "7"), (7.0, "7"), (float("nan"), None), (np.float64(3.0), "3"),
                                        (np.str_("P-1"), "p-1"), ("", None)])
def test_patient_ids_from_numpy_and_pandas_columns(value, key) -> None:
    from biomedvr_cli.pipeline.images import _group_of

    assert _group_of(value, 0) == key


@pytest.mark.parametrize("value", [7.5, True, b"P-1"])
def test_patient_ids_that_are_no_ids_are_refused(value) -> None:
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.pipeline.images import _group_of

    with pytest.raises(UsageError, match="text or a whole number"):
        _group_of(value, 0)


def test_saturated_pixels_of_a_flat_float_image_are_white() -> None:
    from biomedvr_cli.data.scaling import minmax_to_uint8

    flat = np.array([[0.5, 0.5, np.inf, -np.inf, np.nan]], dtype=np.float32)
    assert minmax_to_uint8(flat).tolist() == [[0, 0, 255, 0, 0]]


# A second review, of this session's own change.

def test_python_load_without_a_backbone_loads_the_one_the_adapter_names(tmp_path: Path) -> None:
    import biomedvr
    from tests.conftest import make_color_tree, write_color_attributes

    root = make_color_tree(tmp_path / "data", per_class=4)
    write_color_attributes(root / "attributes.json")
    out = tmp_path / "sandbox.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        biomedvr.fit(root, shots=2, backbone="sandbox", out=out, epochs=1)
        for predictor in (biomedvr.load(out), biomedvr.load(out, device="cpu")):
            assert predictor.backbone.label == "sandbox" and predictor.path == out


def test_a_class_name_with_brackets_is_a_column_header_not_markup() -> None:
    from biomedvr_cli.cli import console

    with console.console.capture() as captured:
        console.rows_table("confusion", ["true \\ pred", "stage [b] lesion", "basophil [/i]"], [["x", 1, 2]])
    assert "stage [b] lesion" in captured.get() and "basophil [/i]" in captured.get()


def test_an_interrupt_during_the_renames_still_removes_a_stale_plot(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from biomedvr_cli.benchmark import report

    (tmp_path / "accuracy_vs_shots.png").write_bytes(b"an earlier run's plot")
    real = os.replace

    def interrupted(src, dst):
        real(src, dst)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_reports(tmp_path, [], [], {"jobs": 0})
    assert not (tmp_path / "accuracy_vs_shots.png").exists()


def test_a_grid_given_as_a_list_equal_to_the_default_is_not_a_setting_moved() -> None:
    from biomedvr_cli.method.config import GAUSSIAN_SCALES, MethodConfig, unused_settings

    config = MethodConfig(head_family="logistic")
    assert unused_settings(config, {"head_gaussian_scales": list(GAUSSIAN_SCALES)}) == []
    assert [u[0] for u in unused_settings(config, {"head_gaussian_scales": [0.1]})] == ["head_gaussian_scales"]


def test_stored_jobs_of_logistic_head_methods_keep_their_signature() -> None:
    from biomedvr_cli.benchmark.methods import Overrides, method_signature
    from biomedvr_cli.method.registry import registry

    methods = registry().methods
    for name in ("biomedvr-logistic-head", "biomedvr-average-head", "biomedvr-decade-grid"):
        config = method_signature(methods[name], Overrides())["config"]
        assert "head_family" not in config and "head_gaussian_scales" not in config, name
    assert method_signature(methods["biomedvr"], Overrides())["config"]["head_family"] == "logistic+gaussian"

"""``biomedvr sandbox`` given bad task files, bad option values and bad weights: one clean error each.

Every case runs the real Typer app and checks the exit code (2 bad option value, 3 bad task
file, 4 weights that are not a sandbox model), exactly one ``error: ... (fix: ...)`` line with
the key words, no traceback, and for task files that nothing was written inside or beside OUT.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.sandbox import TASKS_DIR, WEIGHTS_PATH

runner = CliRunner()
TINY = ["--train-per-class", "1", "--test-per-class", "1"]


def _one_error(res, code: int, *words: str) -> str:
    """The single ``error:`` line of a failed run, checked for its code, key words and fix."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, res.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    assert "(fix: " in lines[0]
    return lines[0]


def _blood_smear(**changes) -> dict:
    return json.loads((TASKS_DIR / "blood-smear.json").read_text(encoding="utf-8")) | changes


def _renamed(tmp_path: Path, new: str, old: str = "lymphocyte") -> Path:
    doc = _blood_smear()
    doc["classes"] = {new if k == old else k: v for k, v in doc["classes"].items()}
    return _write(tmp_path, doc)


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _make(work: Path, task_file: Path | str, *extra: str):
    return runner.invoke(app, ["sandbox", "make", str(work / "o"), "--task-file", str(task_file), *TINY, *extra])


# --- 1: class names of a task file --------------------------------------------------------

@pytest.mark.parametrize(("name", "words"), [
    ("../../evil", ["class 5 of 5", "file path"]),
    ("", ["class 5 of 5", "empty"]),
    ("a/b", ["class 5 of 5", "path separator"]),
    ("2023-01-15", ["class 5 of 5", "date"]),
    (".hidden", ["class 5 of 5", "dot"]),
    ("BASOPHIL", ["class 5 of 5", "class 4 of 5", "case"]),
    ("lymphocyte ", ["class 5 of 5", "spaces"]),
])
def test_task_file_class_names_are_refused_before_anything_is_written(tmp_path: Path, name: str,
                                                                      words: list[str]) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    line = _one_error(_make(work, _renamed(tmp_path, name)), 3, "t.json", *words)
    if name in ("../../evil", "a/b", "2023-01-15", ".hidden"):  # named by place, never echoed
        assert name not in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "t.json"]  # nothing inside or beside OUT


def test_a_built_in_task_name_is_never_a_path(tmp_path: Path) -> None:
    res = runner.invoke(app, ["sandbox", "make", str(tmp_path / "o"), "--task", "../tasks/blood-smear", *TINY])
    _one_error(res, 2, "is not a built-in task", "blood-smear")
    assert not (tmp_path / "o").exists()


# --- 2: bad field values and bad option values ------------------------------------------

@pytest.mark.parametrize(("changes", "words"), [
    ({"default_shift": 5}, ["default_shift", "shift name"]),
    ({"confusion_pairs": [[["basophil"], "eosinophil"]]}, ["confusion pair 1"]),
    ({"confusion_pairs": 5}, ["confusion_pairs", "list"]),
    ({"description": ["x"]}, ["description", "string"]),
    ({"schema_version": True}, ["schema_version"]),
    ({"image_size": True}, ["image_size"]),
])
def test_task_file_fields_of_the_wrong_type_exit_3(tmp_path: Path, changes: dict, words: list[str]) -> None:
    res = _make(tmp_path, _write(tmp_path, _blood_smear(**changes)))
    _one_error(res, 3, "t.json", *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


@pytest.mark.parametrize(("size", "words"), [
    ({"small": 1e308, "large": 1e308}, ["size", "normalised"]),
    ({"small": True}, ["size", "finite positive"]),
    ({"small": -1}, ["size", "finite positive"]),
    ([["small"]], ["size", "not a value name"]),
    (3, ["size", "value, a list of values"]),
])
def test_task_file_weights_must_be_finite_positive_and_normalisable(tmp_path: Path, size, words: list[str]) -> None:
    doc = _blood_smear()
    doc["classes"]["lymphocyte"]["size"] = size
    _one_error(_make(tmp_path, _write(tmp_path, doc)), 3, "t.json", "lymphocyte", *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


@pytest.mark.parametrize(("args", "option"), [
    (["sandbox", "make", "OUT", "--task", "blood-smear", "--seed", "-1", *TINY], "--seed"),
    (["sandbox", "make", "OUT", "--task", "blood-smear", "--train-per-class", "0"], "--train-per-class"),
    (["sandbox", "properties", "--n-align", "1"], "--n-align"),
    (["sandbox", "properties", "--n-align", "0"], "--n-align"),
    (["sandbox", "properties", "--n-align", "-5"], "--n-align"),
    (["sandbox", "properties", "--test-per-class", "0", "--n-align", "20"], "--test-per-class"),
    (["sandbox", "properties", "--seed", "-1"], "--seed"),
])
def test_option_values_out_of_range_exit_2_before_any_work(tmp_path: Path, args: list[str], option: str) -> None:
    args = [str(tmp_path / "o") if a == "OUT" else a for a in args]
    _one_error(runner.invoke(app, args), 2, option)
    assert not (tmp_path / "o").exists()


def test_weights_that_are_not_safetensors_exit_4(tmp_path: Path) -> None:
    weights = tmp_path / "some.json"
    weights.write_text("{}", encoding="utf-8")
    res = runner.invoke(app, ["sandbox", "properties", "--weights", str(weights), "--n-align", "10",
                              "--test-per-class", "1"])
    _one_error(res, 4, "some.json", "not a sandbox model", "safetensors")


def test_weights_of_another_architecture_exit_4(tmp_path: Path, tiny_backbone_spec: str) -> None:
    # An exported open_clip model of another architecture, as `backbones export` writes one.
    exported = tmp_path / "open_clip_model.safetensors"
    exported.write_bytes(Path(tiny_backbone_spec.split(":", 1)[1]).read_bytes())
    res = runner.invoke(app, ["sandbox", "properties", "--weights", str(exported), "--n-align", "10",
                              "--test-per-class", "1"])
    _one_error(res, 4, "open_clip_model.safetensors", "not a sandbox model", "architecture")


# --- 3: a task file that is not a regular file ------------------------------------------

def test_task_file_that_is_a_device_or_folder_is_not_read(tmp_path: Path) -> None:
    for given, words in (("/dev/null", ["null", "not a regular file"]), (str(tmp_path), [tmp_path.name, "folder"])):
        line = _one_error(_make(tmp_path, given), 3, *words)
        assert "PosixPath" not in line and "built-in task" not in line
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_task_file_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "task-pipe"  # no .json suffix: --task-file is a file whatever its name
    os.mkfifo(fifo)
    line = _one_error(_make(tmp_path, fifo), 3, "task-pipe", "not a regular file")
    assert "PosixPath" not in line
    assert not (tmp_path / "o").exists()


# --- 4: third-party log lines stay off stderr -------------------------------------------

def test_properties_with_weights_keeps_open_clip_logging_off_stderr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    res = runner.invoke(app, ["sandbox", "properties", "--weights", str(WEIGHTS_PATH), "--n-align", "10",
                              "--test-per-class", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert "WARNING" not in res.stderr and "pretrained weights" not in res.stderr
    assert not [r for r in caplog.records if "pretrained weights" in r.getMessage()]
    assert json.loads(res.stdout)["n_align"] == 10


def test_make_refuses_an_image_count_that_would_fill_the_disk(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sandbox", "make", str(tmp_path / "o"), "--task", "blood-smear",
                                      "--train-per-class", "1000000000"])
    assert result.exit_code == 2 and "less than or equal to 100000" in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()

"""``biomedvr sandbox make`` / ``tasks`` / ``pretrain`` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app

runner = CliRunner()


def test_make_writes_an_image_folder_tree(tmp_path: Path) -> None:
    out = tmp_path / "blood"
    res = runner.invoke(app, ["sandbox", "make", str(out), "--task", "blood-smear", "--per-class", "2",
                              "--test-per-class", "1", "--shift", "default", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    classes = (out / "classes.txt").read_text(encoding="utf-8").splitlines()
    assert classes == summary["classes"] and len(classes) == 5
    for split, n in (("train", 2), ("test", 1)):
        for c in classes:
            assert len(list((out / split / c).glob("*.png"))) == n
    attrs = json.loads((out / "attributes.json").read_text(encoding="utf-8"))
    assert set(attrs["classes"]) == set(classes)
    assert summary["shift"] == "stain"


def test_make_refuses_to_overwrite_and_checks_options(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    assert runner.invoke(app, ["sandbox", "make", str(out), "--task", "blood-smear"]).exit_code == 2
    assert runner.invoke(app, ["sandbox", "make", str(tmp_path / "e")]).exit_code == 2
    res = runner.invoke(app, ["sandbox", "make", str(tmp_path / "f"), "--task", "nope"])
    assert res.exit_code == 2  # a bad option value
    assert not (tmp_path / "f").exists()


def test_make_with_task_file_and_force(tmp_path: Path) -> None:
    task = tmp_path / "t.json"
    task.write_text(json.dumps({"schema_version": 1, "name": "t", "classes": {
        "alpha cell": {"size": "small"}, "beta cell": {"size": "large"}}}), encoding="utf-8")
    out = tmp_path / "t"
    args = ["sandbox", "make", str(out), "--task-file", str(task), "--per-class", "1", "--test-per-class", "0"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args + ["--force"]).exit_code == 0
    assert (out / "train" / "alpha cell").is_dir() and not (out / "attributes.json").exists()


def test_tasks_lists_builtins_as_json() -> None:
    res = runner.invoke(app, ["sandbox", "tasks", "--json"])
    assert res.exit_code == 0
    names = [t["name"] for t in json.loads(res.stdout)["tasks"]]
    assert "blood-smear" in names and "cervical-cytology" in names


def test_made_tree_is_read_by_the_image_folder_source(tmp_path: Path) -> None:
    from biomedvr_cli.data.sources import open_source

    out = tmp_path / "c"
    res = runner.invoke(app, ["sandbox", "make", str(out), "--task", "cervical-cytology", "--per-class", "1",
                              "--test-per-class", "1"])
    assert res.exit_code == 0, res.output
    classes = (out / "classes.txt").read_text(encoding="utf-8").splitlines()
    for split in ("train", "test"):
        src = open_source(out / split)
        assert sorted(src.classes) == sorted(classes) and len(src.records) == len(classes)


def test_pretrain_options_default_to_pretrain_config() -> None:
    """One source of defaults: every PretrainConfig field is an option with the field's default."""
    import inspect
    from dataclasses import asdict

    import typer

    from biomedvr_cli.sandbox.pretrain import PretrainConfig, pretrain

    group = typer.main.get_command(app).commands["sandbox"]
    params = {p.name: p for p in group.commands["pretrain"].params}
    for name, default in asdict(PretrainConfig()).items():
        assert params[name].default == default, name
    assert params["out"].required  # no default output, least of all inside the installed package
    assert inspect.signature(pretrain).parameters["out"].default is inspect.Parameter.empty


def test_pretrain_refuses_existing_out_without_force(tmp_path: Path) -> None:
    assert runner.invoke(app, ["sandbox", "pretrain"]).exit_code == 2
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"keep")
    res = runner.invoke(app, ["sandbox", "pretrain", "--out", str(out), "--steps", "1"])
    assert res.exit_code == 2 and "--force" in res.output
    assert out.read_bytes() == b"keep"


@pytest.mark.parametrize("option, value, says", [
    ("--steps", "0", "--steps is 0"), ("--lr", "nan", "--lr is nan"), ("--batch-size", "2", "at least 4"),
    ("--frame-probability", "1.5", "at most 1.0"), ("--zoom-min", "1.5", "above --zoom-max"),
    ("--frame-max-fraction", "0.6", "--frame-max-fraction is 0.6"), ("--minutes", "0", "above 0.0"),
])
def test_pretrain_refuses_settings_out_of_range_before_writing(tmp_path: Path, option: str, value: str, says: str) -> None:
    out = tmp_path / "w.safetensors"
    res = runner.invoke(app, ["sandbox", "pretrain", "--out", str(out), option, value])
    assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output
    assert not out.exists()


@pytest.mark.slow
def test_pretrain_tiny_run_writes_weights_with_its_command(tmp_path: Path) -> None:
    from biomedvr_cli.sandbox.modelio import read_metadata

    out = tmp_path / "w.safetensors"
    res = runner.invoke(app, ["sandbox", "pretrain", "--out", str(out), "--steps", "2", "--batch-size", "8",
                              "--workers", "0", "--threads", "1", "--lr", "0.002", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["steps_done"] == 2 and summary["stopped_by"] == "steps"
    assert summary["command"].endswith("--seed 0 --batch-size 8 --lr 0.002 --threads 1 --workers 0")
    assert json.loads(read_metadata(out)["config"])["lr"] == 0.002

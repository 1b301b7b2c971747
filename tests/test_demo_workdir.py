"""``biomedvr demo`` works in a folder the user chose, or in a new temporary folder it names: never the current folder."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app


def test_demo_says_where_its_folder_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.pipeline import demo

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[Path] = []

    def fake_run(workdir: Path, *args) -> demo.DemoResult:
        seen.append(workdir)
        metrics = dict.fromkeys(("accuracy", "balanced_accuracy", "macro_f1", "auroc_ovr", "ece", "nll"), 0.5)
        return demo.DemoResult("blood-smear", 1, 0.2, 0.3, metrics, {}, ["biomedvr fit ..."])

    monkeypatch.setattr(demo, "_run", fake_run)
    result = CliRunner().invoke(app, ["demo", "--shots", "1"])
    assert result.exit_code == 0, result.stderr
    assert seen[0].parent == tmp_path and seen[0].name.startswith("biomedvr-demo-")
    assert f"working in {seen[0]}" in result.stderr and f"are in {seen[0]}" in result.stderr
    chosen = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path / "mine"), "--json"])
    assert chosen.exit_code == 0 and json.loads(chosen.stdout)["workdir"] == str(tmp_path / "mine")


@pytest.mark.slow
def test_demo_defaults_to_a_named_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.pipeline import demo

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    real = demo.run_demo
    # The same run as the command, on a smaller task (the command's sizes take minutes).
    monkeypatch.setattr(demo, "run_demo", lambda workdir, **kw: real(workdir, **{**kw, "per_class": 4, "test_per_class": 2}))
    result = CliRunner().invoke(app, ["demo", "--shots", "1", "--json"])
    assert result.exit_code == 0, result.stderr
    workdir = Path(json.loads(result.stdout)["workdir"])
    assert workdir.parent == tmp_path / "tmp" and workdir.name.startswith("biomedvr-demo-")
    assert (workdir / "adapter.safetensors").is_file()
    assert f"working in {workdir}" in result.stderr
    assert list(repo.iterdir()) == []  # nothing left in the current folder


def test_demo_removes_its_temporary_folder_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.errors import InvalidInputError
    from biomedvr_cli.pipeline import demo

    def fails(workdir, *args):
        (workdir / "data").mkdir()  # something made, then a failure
        raise InvalidInputError("the task could not be made", "try again")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(demo, "_run", fails)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 3, result.stderr
    assert not list(tmp_path.glob("biomedvr-demo-*"))
    refused = CliRunner().invoke(app, ["demo", "--task", "no-such-task"])  # refused before any folder is made
    assert refused.exit_code == 2 and not list(tmp_path.iterdir())

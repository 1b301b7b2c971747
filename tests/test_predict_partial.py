"""An interrupted `predict --out` keeps the predictions it finished beside --out, never in it (#18 review)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.test_bad_inputs import World, runner, world  # noqa: F401  (world: the fixture)

from biomedvr_cli.cli.app import app


def _interrupt_on_call(number: int, exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the first ``number - 1`` decodes run, then raise ``exc`` (Ctrl-C or SIGTERM mid-run)."""
    import biomedvr_cli.pipeline.predict as predict_module
    from biomedvr_cli.data import decode_to_tensors as real

    calls: list[int] = []

    def decode(*args, **kwargs):
        calls.append(1)
        if len(calls) >= number:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_module, "decode_to_tensors", decode)


def _inputs(world: World) -> list[str]:  # noqa: F811
    return [str(p) for p in sorted((world.tree / "test").rglob("*.png"))]


def _args(world: World, out: Path, *extra: str) -> list[str]:  # noqa: F811
    return ["predict", *_inputs(world), "--adapter", str(world.adapter), "--backbone", world.spec,
            "--batch-size", "2", "--out", str(out), *extra]


def test_interrupted_csv_keeps_the_finished_rows_beside_out(world: World, tmp_path: Path,  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "preds.csv"
    _interrupt_on_call(3, KeyboardInterrupt(), monkeypatch)  # two batches of 2 done
    result = runner.invoke(app, _args(world, out))
    assert result.exit_code == 130, result.stderr
    assert not out.exists()
    kept = tmp_path / "preds.partial.csv"
    lines = kept.read_text().splitlines()
    assert lines[0].startswith("file,prediction") and len(lines) == 1 + 4
    assert [line.split(",")[0] for line in lines[1:]] == _inputs(world)[:4]  # in input order
    assert f"the 4 predictions made (of {len(_inputs(world))} inputs) are kept in preds.partial.csv" in result.stderr
    assert "nothing was written to preds.csv" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.partial.csv"]  # no lock, no temporary file


def test_terminated_json_says_it_is_incomplete(world: World, tmp_path: Path,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.cli.app import Terminated

    out = tmp_path / "preds.json"
    _interrupt_on_call(2, Terminated(), monkeypatch)
    result = runner.invoke(app, _args(world, out))
    assert result.exit_code == 143 and "terminated (SIGTERM)" in result.stderr
    document = json.loads((tmp_path / "preds.partial.json").read_text())
    assert document["complete"] is False and document["inputs"] == len(_inputs(world))
    assert len(document["predictions"]) == 2 and document["adapter"] == world.adapter.name
    assert signal.getsignal(signal.SIGTERM) is not None


def test_nothing_finished_keeps_nothing(world: World, tmp_path: Path,  # noqa: F811
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "preds.csv"
    _interrupt_on_call(1, KeyboardInterrupt(), monkeypatch)
    result = runner.invoke(app, _args(world, out))
    assert result.exit_code == 130 and "partial outputs were removed" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_partial_file_is_not_replaced_without_force(world: World, tmp_path: Path,  # noqa: F811
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    out, kept = tmp_path / "preds.csv", tmp_path / "preds.partial.csv"
    kept.write_text("mine\n")
    _interrupt_on_call(2, KeyboardInterrupt(), monkeypatch)
    result = runner.invoke(app, _args(world, out))
    assert result.exit_code == 130 and "were not kept: preds.partial.csv already exists" in result.stderr
    assert kept.read_text() == "mine\n" and not out.exists()
    _interrupt_on_call(2, KeyboardInterrupt(), monkeypatch)
    forced = runner.invoke(app, _args(world, out, "--force"))
    assert forced.exit_code == 130 and len(kept.read_text().splitlines()) == 1 + 2


def test_a_partial_name_that_is_an_input_is_never_written(world: World, tmp_path: Path,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "preds.partial.csv"
    manifest.write_text("path\n" + "\n".join(_inputs(world)) + "\n")
    before = manifest.read_text()
    _interrupt_on_call(2, KeyboardInterrupt(), monkeypatch)
    result = runner.invoke(app, ["predict", str(manifest), "--adapter", str(world.adapter), "--backbone", world.spec,
                                 "--batch-size", "2", "--out", str(tmp_path / "preds.csv"), "--force"])
    assert result.exit_code == 130 and "could not be kept in preds.partial.csv" in result.stderr
    assert manifest.read_text() == before


def test_the_python_api_appends_to_made(world: World) -> None:  # noqa: F811
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.pipeline.predict import predict_files
    from biomedvr_cli.pipeline.predictor import load_predictor

    predictor = load_predictor(world.adapter, backbone=world.spec)
    made: list = []
    returned = predict_files(predictor, [world.good], made=made)
    assert returned is made and len(made) == 1 and made[0].error is None
    with pytest.raises(UsageError, match="made must be a list"):
        predict_files(predictor, [world.good], made=())


def test_out_in_missing_folders_creates_them(world: World, tmp_path: Path) -> None:  # noqa: F811
    """Documented in docs/commands.md (Outputs): missing folders on the way to --out are made."""
    out = tmp_path / "new" / "deeper" / "preds.csv"
    result = runner.invoke(app, ["predict", str(world.good), "--adapter", str(world.adapter), "--backbone",
                                 world.spec, "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert out.read_text().startswith("file,prediction")
    assert sorted(p.name for p in out.parent.iterdir()) == ["preds.csv"]


def test_out_dash_is_stdout_and_a_pipe_is_never_replaced(world: World, tmp_path: Path,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.chdir(tmp_path)
    base = ["predict", str(world.good), "--adapter", str(world.adapter), "--backbone", world.spec]
    printed = runner.invoke(app, [*base, "--out", "-", "--format", "csv"])
    assert printed.exit_code == 0 and printed.stdout.startswith("file,prediction") and not (tmp_path / "-").exists()
    assert runner.invoke(app, [*base, "--out", "-"]).exit_code == 2
    os.mkfifo(tmp_path / "pipe")
    refused = runner.invoke(app, [*base, "--out", str(tmp_path / "pipe"), "--format", "csv", "--force"])
    assert refused.exit_code == 2 and "is not a regular file" in refused.stderr
    assert (tmp_path / "pipe").is_fifo()

"""Bad inputs, round 3 (issue 21), outputs and signals: groups 1, 5, 10 and parts of 11.

Each row reproduces a case of the issue and runs through the same harness as the matrix in
``test_bad_inputs.py`` (exit code, one ``error: ... (fix: ...)`` line holding the row's words,
no traceback, nothing new left behind after a failure, no lock or temporary file after a
success), plus its own check that no file was lost or overwritten. The tests below the rows
use real processes where the case is about processes (a lock left by a killed run, two runs
writing one file).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.test_bad_inputs import Env, Row, World, predict, runner, world  # noqa: F401  (world: the fixture)
from tests.test_bad_inputs import test_bad_input as run_row

from biomedvr_cli.cli.app import app

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers


def _same_as(made: Callable[[Env], Path], original: Callable[[Env], Path]) -> Callable[[Env, Any], None]:
    """The row's check: the file ``made`` still holds exactly the bytes of ``original``."""
    def check(env: Env, result: Any) -> None:
        assert made(env).read_bytes() == original(env).read_bytes(), f"{made(env).name} was overwritten"
    return check


def _copy(env: Env, source: Path, name: str) -> Path:
    target = env.tmp / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _lock_text(pid: int) -> str:
    return f"{pid} {socket.gethostname()}\n"


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _sigterm(*args: Any, **kwargs: Any) -> Any:
    """Stands in for a step of a run: SIGTERM to this very process, as `kill PID` or a scheduler sends it."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        raise AssertionError("no SIGTERM handler is installed: the signal would have killed the process")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)  # the handler raises in here
    raise AssertionError("SIGTERM did not stop the run")


def _term_at(target: str) -> Callable[[Env], None]:
    return lambda env: env.monkeypatch.setattr(target, _sigterm)


def _disk_full(env: Env) -> None:
    """Every rename into the row's folder fails as on a full disk (the last step of an atomic write)."""
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if str(dst).startswith(str(env.tmp)):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real(src, dst, *args, **kwargs)

    env.monkeypatch.setattr(os, "replace", replace)


def _manifest_beside_images(env: Env, folder: str = "pics") -> Path:
    """``tmp/m.csv`` listing copies of two images per class that sit in ``tmp/<folder>``."""
    rows = ["path,label"]
    for label in ("alpha cell", "beta cell", "gamma cell"):
        for image in sorted((env.w.tree / "test" / label).glob("*.png"))[:2]:
            copied = _copy(env, image, f"{folder}/{label[0]}-{image.name}")
            rows.append(f"{folder}/{copied.name},{label}")
    return env.text("m.csv", "\n".join(rows) + "\n")


def _benchmark_stops_at_second_job(env: Env) -> None:
    import biomedvr_cli.benchmark.runner as runner_module

    real, calls = runner_module.run_method, []

    def second_is_terminated(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs) if len(calls) == 1 else _sigterm()

    env.monkeypatch.setattr(runner_module, "run_method", second_is_terminated)


def _one_job_kept(env: Env, result: Any) -> None:
    out = env.tmp / "b"
    jobs = sorted(p.name for p in (out / "jobs").iterdir())
    assert len(jobs) == 1 and jobs[0].endswith(".json"), jobs
    assert json.loads((out / "jobs" / jobs[0]).read_text())["metrics"]["accuracy"] is not None
    assert sorted(p.name for p in out.iterdir()) == ["jobs"], "a partial report or a lock was left"


def _csv_has_explanations(env: Env, result: Any) -> None:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1
    for column in ("sentence_score", "feature_head_score", "sentence_share", "sentences_descriptive"):
        assert rows[0].get(column), (column, rows[0])
    assert "(" in rows[0]["sentences_descriptive"]  # "sentence (cosine) | ..."


def _png(path: Path) -> bool:
    return path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def ev(env: Env, images: Path | None, *extra: Any) -> list[Any]:
    """``eval IMAGES --adapter a --backbone <tiny> ...``."""
    return ["eval", images or env.w.tree, *env.ad, *extra]


def fit(env: Env, images: Path | None, out: Path, *extra: Any) -> list[Any]:
    return ["fit", images or env.w.tree, "--shots", "2", "--epochs", "1", "--backbone", env.w.spec, "--out", out, *extra]


# ----------------------------------------------------------------------------- the rows

ROWS: list[Row] = [
    # --- 1. an output is never an input of the same run; outputs are reserved at the start ------
    Row("predict-out-is-the-input-image (#1)",
        lambda e: ["predict", e.tmp / "t.png", *e.ad, "--format", "csv", "--out", e.tmp / "t.png", "--force"], 2,
        ("--out t.png is also an input", "even with --force", "choose another --out"),
        setup=lambda e: _copy(e, e.w.good, "t.png"), check=_same_as(lambda e: e.tmp / "t.png", lambda e: e.w.good)),
    Row("predict-out-is-the-adapter-in-use (#1)",
        lambda e: ["predict", e.w.good, "--adapter", e.tmp / "a.safetensors", "--backbone", e.w.spec, "--format", "json",
                   "--out", e.tmp / "a.safetensors", "--force"], 2, ("--out a.safetensors is also an input",),
        setup=lambda e: _copy(e, e.w.adapter, "a.safetensors"),
        check=_same_as(lambda e: e.tmp / "a.safetensors", lambda e: e.w.adapter)),
    Row("predict-out-is-a-hard-link-to-an-input (#1)",
        lambda e: ["predict", e.tmp / "t.png", *e.ad, "--format", "csv", "--out", e.tmp / "link.csv", "--force"], 2,
        ("--out link.csv is also an input", "the input t.png"),
        setup=lambda e: os.link(_copy(e, e.w.good, "t.png"), e.tmp / "link.csv"),
        check=_same_as(lambda e: e.tmp / "t.png", lambda e: e.w.good)),
    Row("predict-out-is-a-row-of-the-manifest (#1)",
        lambda e: ["predict", e.tmp / "m.csv", *e.ad, "--format", "csv", "--out", e.tmp / "pics" / "t.png", "--force"], 2,
        ("--out t.png is also an input",),
        setup=lambda e: (_copy(e, e.w.good, "pics/t.png"), e.text("m.csv", "path\npics/t.png\n")),
        check=_same_as(lambda e: e.tmp / "pics" / "t.png", lambda e: e.w.good)),
    Row("predict-out-is-the-manifest (#1)",
        lambda e: ["predict", e.tmp / "m.csv", *e.ad, "--out", e.tmp / "m.csv", "--force"], 2,
        ("--out m.csv is also an input",),
        setup=lambda e: (_copy(e, e.w.good, "t.png"), e.text("m.csv", "path\nt.png\n")),
        check=lambda e, r: (e.tmp / "m.csv").read_text() == "path\nt.png\n" or pytest.fail("m.csv overwritten")),
    Row("predict-out-is-an-image-of-the-input-folder (#1)",
        lambda e: ["predict", e.tmp / "imgs", *e.ad, "--format", "csv", "--out", e.tmp / "imgs" / "beta cell" / "img01.png",
                   "--force"], 2, ("--out img01.png is also an input",),
        setup=lambda e: shutil.copyfile(e.tree() / "beta cell" / "img01.png", e.tmp / "ref.png"),
        check=_same_as(lambda e: e.tmp / "imgs" / "beta cell" / "img01.png", lambda e: e.tmp / "ref.png")),
    Row("predict-out-held-by-another-run (#1)",
        lambda e: ["predict", e.w.good, *e.ad, "--out", e.tmp / "p.csv"], 2, ("another biomedvr run is writing p.csv",),
        setup=lambda e: e.text(".p.csv.lock", _lock_text(os.getpid())),  # a live run on this machine
        check=lambda e, r: (e.tmp / ".p.csv.lock").read_text() == _lock_text(os.getpid())
        or pytest.fail("the other run's lock was touched")),
    Row("eval-plots-exist-without-force (#1)", lambda e: ev(e, None, "--plots", e.tmp / "plots"), 2,
        ("confusion_matrix.png already exists", "--force"),
        setup=lambda e: e.text("plots/confusion_matrix.png", "keep"),
        check=lambda e, r: (e.tmp / "plots" / "confusion_matrix.png").read_text() == "keep" or pytest.fail("overwritten")),
    Row("eval-plots-exist-with-force (#1)", lambda e: ev(e, None, "--plots", e.tmp / "plots", "--force"), 0,
        setup=lambda e: (e.text("plots/confusion_matrix.png", "old"), e.text("plots/reliability.png", "old")),
        check=lambda e, r: all(_png(e.tmp / "plots" / n) for n in ("confusion_matrix.png", "reliability.png"))
        or pytest.fail("the plots were not replaced")),
    Row("eval-plots-inside-the-images-folder (#1)", lambda e: ev(e, e.tmp / "imgs", "--plots", e.tmp / "imgs" / "alpha cell"),
        2, ("--plots folder alpha cell is inside the input folder imgs", "outside the images"),
        setup=lambda e: e.tree(per_class=2)),
    Row("eval-plots-folder-holds-the-manifest-images (#1)", lambda e: ev(e, e.tmp / "m.csv", "--plots", e.tmp / "pics"), 2,
        ("--plots folder pics holds input images",), setup=_manifest_beside_images),
    Row("eval-plots-held-by-another-run (#1)", lambda e: ev(e, None, "--plots", e.tmp / "plots"), 2,
        ("another biomedvr run is writing confusion_matrix.png", "--plots"),
        setup=lambda e: e.text("plots/.confusion_matrix.png.lock", _lock_text(os.getpid()))),
    Row("fit-out-is-the-attributes-file (#1)",
        lambda e: fit(e, None, e.tmp / "a.json", "--attributes", e.tmp / "a.json", "--force"), 2,
        ("--out a.json is also an input",), setup=lambda e: _copy(e, e.w.tree / "attributes.json", "a.json"),
        check=_same_as(lambda e: e.tmp / "a.json", lambda e: e.w.tree / "attributes.json")),
    Row("fit-out-is-an-image-of-the-tree (#1)",
        lambda e: fit(e, e.tmp / "imgs", e.tmp / "imgs" / "beta cell" / "img01.png", "--force"), 2,
        ("--out img01.png is also an input",),
        setup=lambda e: shutil.copyfile(e.tree() / "beta cell" / "img01.png", e.tmp / "ref.png"),
        check=_same_as(lambda e: e.tmp / "imgs" / "beta cell" / "img01.png", lambda e: e.tmp / "ref.png")),
    Row("fit-out-is-the-manifest (#1)", lambda e: fit(e, e.tmp / "m.csv", e.tmp / "m.csv", "--force"), 2,
        ("--out m.csv is also an input",), setup=_manifest_beside_images),
    # --- 5. SIGTERM is Ctrl-C: one line, exit 143, nothing partial, no lock; stale locks are taken over
    Row("fit-sigterm (#5)", lambda e: fit(e, None, e.tmp / "out.safetensors"), 143, ("terminated (sigterm)", "run the command again"),
        setup=_term_at("biomedvr_cli.pipeline.fit.train_head")),
    Row("predict-sigterm (#5)", lambda e: ["predict", e.w.good, *e.ad, "--out", e.tmp / "new" / "p.csv"], 143,
        ("terminated",), setup=_term_at("biomedvr_cli.pipeline.predict.predict_files")),
    Row("eval-sigterm (#5)", lambda e: ev(e, None, "--plots", e.tmp / "plots"), 143, ("terminated",),
        setup=_term_at("biomedvr_cli.pipeline.evaluate.compute_metrics")),
    Row("benchmark-sigterm-before-any-job (#5)",
        lambda e: ["benchmark", e.w.tree, "--methods", "zs-classname", "--shots", "1", "--seeds", "1",
                   "--backbone", e.w.spec, "--out", e.tmp / "b", "--device", "cpu"], 143, ("terminated",),
        setup=_term_at("biomedvr_cli.benchmark.runner.run_method")),  # and no folder b is left
    Row("benchmark-sigterm-keeps-finished-jobs (#5)",
        lambda e: ["benchmark", e.w.tree, "--methods", "zs-classname,zs-attributes", "--shots", "1", "--seeds", "1",
                   "--backbone", e.w.spec, "--out", e.tmp / "b", "--device", "cpu"], 143, ("terminated",),
        setup=_benchmark_stops_at_second_job, may_create=("b",), check=_one_job_kept),
    Row("predict-stale-lock-taken-over (#5)", lambda e: ["predict", e.w.good, *e.ad, "--out", e.tmp / "p.json"], 0,
        setup=lambda e: e.text(".p.json.lock", _lock_text(_dead_pid())),
        check=lambda e, r: ("took over .p.json.lock" in r.stderr and "has ended" in r.stderr
                            and len(json.loads((e.tmp / "p.json").read_text())["predictions"]) == 1)
        or pytest.fail(r.stderr)),
    # --- 10. disk full while writing: exit 3 (an OS error), as documented; nothing partial ---------
    Row("fit-disk-full-exit-3 (#10)", lambda e: fit(e, None, e.tmp / "out.safetensors"), 3,
        ("cannot write out.safetensors", "no space left", "nothing was written", "free some disk space"),
        setup=_disk_full),
    Row("predict-disk-full-exit-3 (#10)", lambda e: ["predict", e.w.good, *e.ad, "--out", e.tmp / "p.csv"], 3,
        ("cannot write p.csv", "no space left", "nothing was written"), setup=_disk_full),
    Row("eval-plots-disk-full-exit-3 (#10)", lambda e: ev(e, None, "--plots", e.tmp / "plots"), 3,
        ("cannot write reliability.png", "no space left", "nothing was written"), setup=_disk_full),
    # --- 11. messages and formats that misled -------------------------------------------------------
    Row("predict-explain-csv-keeps-the-explanation (#11)",
        lambda e: ["predict", e.w.good, *e.ad, "--explain", "--format", "csv"], 0, check=_csv_has_explanations),
    Row("backbones-export-exists-names-dir (#11)", lambda e: ["backbones", "export", e.w.spec, e.tmp / "exp"], 2,
        ("exp already exists", "choose another dir"), setup=lambda e: e.text("exp/keep.txt", "x"),
        check=lambda e, r: "--out" not in r.stderr or pytest.fail(r.stderr)),
    Row("demo-workdir-exists-names-workdir (#11)", lambda e: ["demo", "--workdir", e.tmp / "d"], 2,
        ("d already exists", "choose another --workdir"), setup=lambda e: (e.tmp / "d").mkdir()),
    # --- predict --json, as every other command has it ----------------------------------------------
    Row("predict-json-is-format-json", lambda e: ["predict", e.w.good, *e.ad, "--json"], 0,
        check=lambda e, r: len(e.json_rows(r.stdout)) == 1 or pytest.fail(r.stdout)),
    Row("predict-json-into-out", lambda e: ["predict", e.w.good, *e.ad, "--json", "--out", e.tmp / "p.json"], 0,
        check=lambda e, r: len(json.loads((e.tmp / "p.json").read_text())["predictions"]) == 1 or pytest.fail()),
    Row("predict-json-and-format-csv", lambda e: ["predict", e.w.good, *e.ad, "--json", "--format", "csv"], 2,
        ("--json and --format csv ask for two formats", "only one")),
]


@pytest.mark.parametrize("row", [pytest.param(r, id=r.name, marks=r.marks) for r in ROWS])
def test_output_and_signal_row(row: Row, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    run_row(row, world, tmp_path, monkeypatch)


def test_rows_cover_each_defect_group() -> None:
    names = [r.name for r in ROWS]
    assert len(names) == len(set(names))
    for group in (1, 5, 10, 11):
        assert sum(f"(#{group})" in n for n in names) >= 2, group


# ----------------------------------------------------------------------------- real processes

HOLDER = """
import sys, time
from pathlib import Path
from biomedvr_cli.atomic import reserve_output, write_text_atomic
out = Path(sys.argv[1])
with reserve_output(out, force=False):
    print("held", flush=True)
    if sys.stdin.readline().strip() == "write":
        write_text_atomic(out, "the long run's predictions\\n", force=False)
"""


def _holder(out: Path) -> subprocess.Popen:
    """A second process that reserves ``out`` the way a long run does, and waits to be told what to do."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=env)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_two_runs_writing_one_file_the_second_fails_at_once(world: World, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "same.csv"
    long_run = _holder(out)
    try:
        started = time.perf_counter()
        second = runner.invoke(app, ["predict", str(world.good), "--adapter", str(world.adapter), "--backbone",
                                     world.spec, "--out", str(out)])
        assert second.exit_code == 2 and "another biomedvr run is writing same.csv" in second.stderr, second.stderr
        assert time.perf_counter() - started < 20  # refused up front, not after predicting
        assert not out.exists()
    finally:
        long_run.communicate("write\n", timeout=30)
    assert long_run.returncode == 0  # the long run still writes its results at its end
    assert out.read_text() == "the long run's predictions\n"
    assert [p.name for p in tmp_path.iterdir()] == ["same.csv"]


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_notice(tmp_path: Path) -> None:
    from biomedvr_cli.atomic import reserve_output, write_text_atomic

    out = tmp_path / "a.safetensors"
    killed = _holder(out)
    killed.kill()  # SIGKILL: no cleanup can run, the lock file stays
    killed.wait(timeout=30)
    assert (tmp_path / ".a.safetensors.lock").is_file()
    with pytest.warns(UserWarning, match=rf"took over \.a\.safetensors\.lock.*process {killed.pid}.*has ended"):
        with reserve_output(out, force=False):
            write_text_atomic(out, "new", force=False)
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_a_live_lock_is_never_taken_over(tmp_path: Path) -> None:
    from biomedvr_cli.atomic import reserve_output
    from biomedvr_cli.errors import OutputExistsError

    out = tmp_path / "p.csv"
    holder = _holder(out)
    try:
        with pytest.raises(OutputExistsError, match="another biomedvr run"):
            with reserve_output(out, force=True):
                pass
        assert (tmp_path / ".p.csv.lock").is_file()
    finally:
        holder.communicate("\n", timeout=30)
    assert not (tmp_path / ".p.csv.lock").exists()


def test_after_sigterm_the_next_run_writes_the_same_output(world: World, tmp_path: Path,  # noqa: F811
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "p.csv"
    args = ["predict", str(world.good), "--adapter", str(world.adapter), "--backbone", world.spec, "--out", str(out)]
    with monkeypatch.context() as patch:
        patch.setattr("biomedvr_cli.pipeline.predict.predict_files", _sigterm)
        first = runner.invoke(app, args)
    assert first.exit_code == 143 and list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is not _sigterm  # the CLI put the previous handler back
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.stderr
    assert out.read_text().startswith("file,prediction")


def test_exit_codes_are_documented() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = (REPO / "docs" / "commands.md").read_text(encoding="utf-8")
    assert "| 143 |" in readme and "SIGTERM" in readme
    errors = commands[commands.index("## Errors, exit codes and debugging"):]
    assert "143" in errors and "SIGTERM" in errors and "disk full" in errors.lower()


def test_attributes_out_equal_to_the_classes_file_is_refused_and_leaves_it(tmp_path: Path) -> None:
    """`attributes --out` reserved at start like every other output: never the classes file it reads."""
    from biomedvr_cli.cli.app import app

    classes = tmp_path / "c.txt"
    classes.write_text("alpha cell\nbeta cell\n")
    result = runner.invoke(app, ["attributes", "--classes", str(classes), "--out", str(classes), "--force",
                                 "--offline"])
    assert result.exit_code == 2 and "also an input of this run" in result.stderr, result.stderr
    assert classes.read_text() == "alpha cell\nbeta cell\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]  # no lock, no temporary file

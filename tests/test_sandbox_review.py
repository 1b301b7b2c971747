"""``biomedvr sandbox`` defects of the hostile review (review-bb entries 1, 7, 8, 9, 14, 17, 20).

Each test runs the real Typer app (or the one function at fault) with tiny sizes, and checks
the exit code, the one error line and what is (not) left on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.sandbox import TASKS_DIR, WEIGHTS_PATH
from tests.test_sandbox_bad_inputs import _one_error  # the one error line, checked for code, words and fix

runner = CliRunner()
TINY = ["--train-per-class", "1", "--test-per-class", "0"]




def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def _make(out: str, *extra: str):
    return runner.invoke(app, ["sandbox", "make", out, "--task", "blood-smear", *TINY, *extra])


# --- 1: OUT that is, or holds, the current folder -----------------------------------------

@pytest.mark.parametrize("force", [[], ["--force"]])
def test_make_refuses_the_current_folder_and_keeps_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             force: list[str]) -> None:
    work = tmp_path / "mine"
    (work / "sub").mkdir(parents=True)
    (work / "a.txt").write_text("precious", encoding="utf-8")
    (work / "sub" / "b.txt").write_text("p2", encoding="utf-8")
    before = _tree(tmp_path)
    monkeypatch.chdir(work / "sub")
    _one_error(_make("..", *force), 2, "OUT mine holds the current folder")
    monkeypatch.chdir(work)
    for given in (".", "sub/.."):
        _one_error(_make(given, *force), 2, "OUT mine is the current folder")
    assert _tree(tmp_path) == before  # nothing deleted, no staging folder left


def test_make_into_a_new_folder_under_the_current_one_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = _make("data", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["out"] == "data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert (tmp_path / "data" / "classes.txt").is_file()


def test_make_names_an_existing_out_given_with_dots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data" / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    _one_error(_make("data/x/.."), 2, "data already exists", "--force")


def test_make_force_replaces_out_whole_and_leaves_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    res = _make(str(out), "--force")
    assert res.exit_code == 0, res.output
    assert not (out / "old.txt").exists() and (out / "classes.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_make_force_keeps_the_old_out_when_the_final_rename_fails(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    before = _tree(tmp_path)
    real_rename = Path.rename

    def failing_rename(self: Path, target):
        if Path(target) == out:  # the new tree moving into place
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    _one_error(_make(str(out), "--force"), 2, "cannot write d")
    assert _tree(tmp_path) == before


# --- 17: parent folders the command created -----------------------------------------------

@pytest.mark.parametrize(("raised", "code"), [(KeyboardInterrupt, 130), (OSError(28, "No space left on device"), 2)])
def test_make_interrupted_or_failed_removes_the_parents_it_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  raised, code: int) -> None:
    from biomedvr_cli.sandbox import dataset

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep").write_text("k", encoding="utf-8")

    def stop(tmp: Path, *args, **kwargs) -> int:
        (tmp / "train").mkdir()
        (tmp / "train" / "half.png").write_bytes(b"x")
        raise raised

    monkeypatch.setattr(dataset, "_write_split", stop)
    res = _make(str(tmp_path / "a" / "b" / "c" / "data"))
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["a", "a/keep"]


def test_make_interrupted_with_force_keeps_the_old_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.sandbox import dataset

    out = tmp_path / "d"
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    before = _tree(tmp_path)

    def stop(*args, **kwargs) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset, "_write_split", stop)
    assert _make(str(out), "--force").exit_code == 130
    assert _tree(tmp_path) == before


# --- 20: the attributes file beside a task file --------------------------------------------

def _task_with_attributes(tmp_path: Path, attributes: dict | str) -> Path:
    task = tmp_path / "t.json"
    task.write_bytes((TASKS_DIR / "blood-smear.json").read_bytes())
    text = attributes if isinstance(attributes, str) else json.dumps(attributes)
    (tmp_path / "t.attributes.json").write_text(text, encoding="utf-8")
    return task


def _builtin_attributes() -> dict:
    return json.loads((TASKS_DIR / "blood-smear.attributes.json").read_text(encoding="utf-8"))


def _renamed_class(doc: dict, old: str, new: str) -> dict:
    doc["classes"] = {new if k == old else k: v for k, v in doc["classes"].items()}
    return doc


@pytest.mark.parametrize(("attributes", "words", "hidden"), [
    ({"schema_version": 1, "task": "x", "classes": {"foo": {"descriptive": ["a"], "distinctive": ["b"],
                                                            "confusion": ["c"]}}},
     ["t.attributes.json", "at least two"], None),
    ("{not json", ["t.attributes.json", "not valid JSON"], None),
    (_renamed_class(_builtin_attributes(), "lymphocyte", "monocyte"),
     ["t.attributes.json", "class 5 of 5 of t.json"], "monocyte"),
    (_builtin_attributes() | {"classes": _builtin_attributes()["classes"] | {
        "monocyte": _builtin_attributes()["classes"]["lymphocyte"]}},
     ["t.attributes.json", "class 6 of 6", "not a class of t.json"], "monocyte"),
])
def test_make_checks_the_attributes_file_beside_the_task_file(tmp_path: Path, attributes, words: list[str],
                                                              hidden: str | None) -> None:
    task = _task_with_attributes(tmp_path, attributes)
    res = runner.invoke(app, ["sandbox", "make", str(tmp_path / "o"), "--task-file", str(task), *TINY])
    line = _one_error(res, 3, *words)
    if hidden is not None:  # classes are named by place only
        assert hidden not in line and "lymphocyte" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.attributes.json", "t.json"]


def test_make_copies_a_matching_attributes_file_that_fit_accepts(tmp_path: Path) -> None:
    from biomedvr_cli.attributes import load_attributes

    task = _task_with_attributes(tmp_path, _builtin_attributes())
    res = runner.invoke(app, ["sandbox", "make", str(tmp_path / "o"), "--task-file", str(task), *TINY])
    assert res.exit_code == 0, res.output
    copied = load_attributes(tmp_path / "o" / "attributes.json")
    assert sorted(copied.class_names) == sorted((tmp_path / "o" / "classes.txt").read_text().split("\n")[:-1])


# --- 14: duplicate class names in a task file ----------------------------------------------

def test_duplicate_class_names_are_named_by_place_only(tmp_path: Path) -> None:
    doc = json.loads((TASKS_DIR / "blood-smear.json").read_text(encoding="utf-8"))
    doc["classes"]["John Smith"] = doc["classes"]["eosinophil"]
    doc["classes"]["john smith"] = doc["classes"]["basophil"]
    task = tmp_path / "phi.json"
    task.write_text(json.dumps(doc), encoding="utf-8")
    res = runner.invoke(app, ["sandbox", "make", str(tmp_path / "o"), "--task-file", str(task), *TINY])
    line = _one_error(res, 3, "phi.json", "class 7 of 7 duplicates class 6 of 7", "case")
    assert "smith" not in line.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phi.json"]


# --- 9: weights holding NaN or inf ---------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_properties_refuses_weights_that_are_not_finite(tmp_path: Path, value: float) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(WEIGHTS_PATH), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    tensors["visual.proj"] = tensors["visual.proj"].clone()
    tensors["visual.proj"].view(-1)[0] = value
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    res = runner.invoke(app, ["sandbox", "properties", "--weights", str(bad), "--n-align", "10",
                              "--test-per-class", "1"])
    _one_error(res, 4, "bad.safetensors", "non-finite", "visual.proj")
    assert "caption retrieval" not in res.stdout


# --- 7: a small batch in which a family has no labelled image -------------------------------

def test_aux_loss_is_finite_when_a_family_is_missing_from_the_batch() -> None:
    import torch

    from biomedvr_cli.sandbox import pretrain as pt
    from biomedvr_cli.sandbox.modelio import create_model, get_tokenizer
    from biomedvr_cli.sandbox.vocabulary import FAMILIES

    cfg = pt.PretrainConfig(batch_size=8, workers=0, threads=1)
    torch.manual_seed(0)
    model = create_model()
    heads = pt._aux_heads(model)
    x, tokens, attrs = pt._batch_tensors(0, 0, cfg, get_tokenizer())
    attrs[:, list(FAMILIES).index("granule_colour")] = -1  # as in a batch of 8 without granules
    loss = pt._loss(model, heads, x, tokens, attrs, cfg)
    assert torch.isfinite(loss)
    # A whole optimiser step trains (no "diverged" error), and the weights stay finite.
    pt._step(model, heads, pt._optimiser(model, heads, cfg), (x, tokens, attrs), 1e-3, 0, cfg)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_aux_loss_is_unchanged_when_every_family_occurs() -> None:
    import torch
    import torch.nn.functional as F

    from biomedvr_cli.sandbox import pretrain as pt

    torch.manual_seed(0)
    heads = torch.nn.ModuleList([torch.nn.Linear(4, 3) for _ in range(3)])
    img = torch.randn(6, 4)
    attrs = torch.tensor([[0, 1, -1], [1, -1, 2], [2, 0, -1], [0, 1, 1], [1, 2, 0], [2, 0, -1]])
    old = sum(F.cross_entropy(h(10.0 * img), attrs[:, j], ignore_index=-1) for j, h in enumerate(heads)) / len(heads)
    assert torch.equal(pt._aux_loss(heads, img, attrs), old)


# --- 8: periodic checkpoints go beside OUT, and a stopped run removes them -------------------

_PRETRAIN = ["--steps", "3", "--batch-size", "4", "--workers", "0", "--eval-every", "0", "--threads", "1",
             "--save-every-minutes", "0.000001"]


def _stop_at_second_step(monkeypatch: pytest.MonkeyPatch, raised: BaseException, seen: list[bool], out: Path) -> None:
    """Run step 0 for real (a checkpoint follows it), then raise ``raised`` at step 1."""
    from biomedvr_cli.sandbox import pretrain as pt

    real_step = pt._step

    def step(model, heads, opt, batch, lr, i, cfg):
        if i == 1:
            seen.append(pt.checkpoint_path(out).is_file() and out.read_bytes() == b"original")
            raise raised
        return real_step(model, heads, opt, batch, lr, i, cfg)

    monkeypatch.setattr(pt, "_step", step)


@pytest.mark.parametrize(("raised", "code"), [
    (KeyboardInterrupt(), 130),
    (None, 1),  # divergence, built below (TrainingError needs the library import)
])
def test_stopped_pretrain_keeps_the_old_out_and_removes_its_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       raised, code: int) -> None:
    from biomedvr_cli.errors import TrainingError
    from biomedvr_cli.sandbox.pretrain import checkpoint_path

    out = tmp_path / "mine.safetensors"
    out.write_bytes(b"original")
    seen: list[bool] = []
    _stop_at_second_step(monkeypatch, raised or TrainingError("pretraining diverged at step 1", "x"), seen, out)
    res = runner.invoke(app, ["sandbox", "pretrain", "--out", str(out), "--force", *_PRETRAIN])
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert seen == [True]  # the checkpoint was beside OUT while OUT was still the user's file
    assert out.read_bytes() == b"original"
    assert not checkpoint_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.safetensors"]


def test_finished_pretrain_writes_out_and_removes_its_checkpoint(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.sandbox import properties
    from biomedvr_cli.sandbox.modelio import read_metadata

    monkeypatch.setattr(properties, "quick_alignment", lambda *a, **k: {})  # the 400-image measurement is not at issue
    out = tmp_path / "w.safetensors"
    res = runner.invoke(app, ["sandbox", "pretrain", "--out", str(out), *_PRETRAIN])
    assert res.exit_code == 0, res.output
    assert read_metadata(out)["steps_done"] == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_pretrain_keeps_a_checkpoint_left_by_a_killed_run_without_force(tmp_path: Path) -> None:
    out = tmp_path / "w.safetensors"
    left = tmp_path / "w.safetensors.partial"
    left.write_bytes(b"last save of a killed run")
    res = runner.invoke(app, ["sandbox", "pretrain", "--out", str(out), *_PRETRAIN])
    _one_error(res, 2, "w.safetensors.partial already exists", "--force")
    assert left.read_bytes() == b"last save of a killed run" and not out.exists()
    assert os.listdir(tmp_path) == ["w.safetensors.partial"]

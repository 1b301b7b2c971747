"""Bad inputs found by a hostile review on 2026-12-07 (issue #17's session 11), through the same harness.

Each row runs like the matrix of ``test_bad_inputs.py``: exit code, one ``error: ... (fix: ...)``
line holding the row's words, no traceback, nothing new left behind after a failure. The
groups: an empty path taken as the current folder (empty), outputs that would land among
inputs or replace files no benchmark wrote (out), an adapter's calibration record edited by
hand (calibration), and a class emptied by patient grouping (grouping).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.test_bad_inputs import Env, Row, World, _edited_adapter, predict, runner, world  # noqa: F401
from tests.test_bad_inputs import test_bad_input as run_row

from biomedvr_cli.cli.app import app


def _bench(env: Env, images: Any, out: Any, *extra: Any) -> list[Any]:
    return ["benchmark", images, "--methods", "zs-attributes", "--shots", "1", "--seeds", "1", "--backbone",
            env.w.spec, "--out", out, *extra]


def _copy_tree(env: Env) -> Path:
    return Path(shutil.copytree(env.w.tree, env.tmp / "imgs"))


def _calibration(env: Env, part: str, key: str, value: Any) -> Path:
    def edit(config: dict) -> None:
        config["calibration"][part][key] = value
    return _edited_adapter(env.w.adapter, env.tmp / "edited.safetensors", config=edit)


def _unchanged(path: str, text: str):
    def check(env: Env, result: Any) -> None:
        assert (env.tmp / path).read_text() == text, f"{path} was overwritten"
    return check


def _shared_patients(env: Env) -> Path:
    """A manifest whose patient ids (PatientID) recur in train and test: grouping empties training."""
    rows = ["path,label,split,PatientID"]
    for split in ("train", "test"):
        for folder in sorted((env.w.tree / split).iterdir()):
            for i, image in enumerate(sorted(folder.glob("*.png"))):
                rows.append(f"{image},{folder.name},{split},P{i}")
    return env.text("m.csv", "\n".join(rows) + "\n")


def _names_the_group_column(env: Env, result: Any) -> None:
    assert "grouped by column 'PatientID'" in result.stderr, result.stderr


ROWS: list[Row] = [
    # --- an empty path is not the current folder
    Row("empty-eval-outliers", lambda e: ["eval", e.w.tree, *e.ad, "--outliers", ""], 2, ("empty path", "--outliers")),
    Row("empty-eval-plots", lambda e: ["eval", e.w.tree, *e.ad, "--plots", ""], 2, ("empty path", "--plots")),
    Row("empty-predict-input", lambda e: ["predict", "", *e.ad], 2, ("empty path",)),
    Row("empty-fit-out", lambda e: ["fit", e.w.tree, "--shots", "2", "--backbone", e.w.spec, "--out", ""], 2,
        ("empty path", "--out")),
    Row("empty-benchmark-out", lambda e: _bench(e, e.w.tree, ""), 2, ("empty path", "--out")),
    Row("empty-info-adapter", lambda e: ["info", ""], 2, ("empty path",)),
    # --- outputs
    Row("out-fit-is-a-folder-even-with-force",
        lambda e: ["fit", e.w.tree, "--shots", "2", "--backbone", e.w.spec, "--out", e.tmp / "d", "--force"], 2,
        ("d is a folder", "file name"), setup=lambda e: (e.tmp / "d").mkdir()),
    Row("out-predict-is-a-folder", lambda e: [*predict(e), "--out", e.tmp / "d"], 2, ("d is a folder",),
        setup=lambda e: (e.tmp / "d").mkdir()),
    Row("out-benchmark-is-the-images-folder", lambda e: _bench(e, e.tmp / "imgs", e.tmp / "imgs"), 2,
        ("--out folder imgs is the input folder imgs",), setup=_copy_tree),
    Row("out-benchmark-inside-the-images-folder", lambda e: _bench(e, e.tmp / "imgs", e.tmp / "imgs" / "train"), 2,
        ("--out folder train is inside the input folder imgs",), setup=_copy_tree),
    Row("out-benchmark-folder-of-other-files", lambda e: _bench(e, e.w.tree, e.tmp / "mine"), 2,
        ("holds files no benchmark wrote (jobs.csv and 1 more)", "new or empty --out folder"),
        setup=lambda e: (e.text("mine/summary.md", "notes"), e.text("mine/jobs.csv", "a,b")),
        check=_unchanged("mine/summary.md", "notes")),
    Row("out-benchmark-report-would-replace-a-manifest", lambda e: _bench(e, e.tmp / "jobs.csv", e.tmp), 2,
        ("--out jobs.csv is also an input",),
        setup=lambda e: e.text("jobs.csv", "path,label,split\n"), check=_unchanged("jobs.csv", "path,label,split\n")),
    Row("out-eval-plots-in-the-outliers-folder",
        lambda e: ["eval", e.w.tree, *e.ad, "--outliers", e.tmp / "other", "--plots", e.tmp / "other"], 2,
        ("--plots folder other is the input folder other",),
        setup=lambda e: shutil.copytree(e.w.tree / "test" / "alpha cell", e.tmp / "other")),
    Row("out-eval-plots-hold-the-outlier-manifest-images",
        lambda e: ["eval", e.w.tree, *e.ad, "--outliers", e.tmp / "o.csv", "--plots", e.tmp / "pics"], 2,
        ("--plots folder pics holds input images",),
        setup=lambda e: (shutil.copytree(e.w.tree / "test" / "alpha cell", e.tmp / "pics"),
                         e.text("o.csv", "path\n" + "\n".join(f"pics/{p.name}" for p in sorted((e.tmp / "pics").iterdir()))))),
    # --- an adapter's calibration record edited by hand: info and predict refuse it alike (exit 4)
    Row("calibration-rate-text-info", lambda e: ["info", _calibration(e, "outliers", "rate", "x")], 4,
        ("config.calibration.outliers.rate", "between 0 and 1", "refit")),
    Row("calibration-rate-text-predict", lambda e: ["predict", e.w.good, "--adapter",
                                                    _calibration(e, "outliers", "rate", "x"), "--backbone", e.w.spec], 4,
        ("config.calibration.outliers.rate",)),
    Row("calibration-rate-above-one-predict", lambda e: ["predict", e.w.good, "--adapter",
                                                         _calibration(e, "outliers", "rate", 2), "--backbone", e.w.spec],
        4, ("config.calibration.outliers.rate is 2",)),
    Row("calibration-threshold-negative-info", lambda e: ["info", _calibration(e, "outliers", "threshold", -1)], 4,
        ("config.calibration.outliers.threshold is -1", "at least 0")),
    Row("calibration-images-text-info", lambda e: ["info", _calibration(e, "conformal", "images", "many")], 4,
        ("config.calibration.conformal.images",)),
    Row("calibration-method-unknown-predict",
        lambda e: ["predict", e.w.good, "--adapter", _calibration(e, "conformal", "method", "magic"),
                   "--backbone", e.w.spec, "--coverage", "0.8"], 4, ("config.calibration.conformal.method", "split or cv+")),
    # --- grouping that empties a class says why, and which column grouped the images
    Row("grouping-empties-a-class",
        lambda e: ["fit", e.tmp / "m.csv", "--shots", "1", "--backbone", e.w.spec, "--attributes",
                   e.w.tree / "attributes.json", "--out", e.tmp / "g.safetensors", "--allow-fewer"], 3,
        ("were left out: their patient/group also has images in the test split", "one side only"),
        setup=_shared_patients, check=_names_the_group_column),
]


@pytest.mark.parametrize("row", [pytest.param(r, id=r.name) for r in ROWS])
def test_review_row(row: Row, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    run_row(row, world, tmp_path, monkeypatch)


def test_every_path_parameter_refuses_an_empty_path() -> None:
    """Every command's path parameters parse through ``path_value`` (so a path option added later does too)."""
    import typer.main

    from biomedvr_cli.cli import options

    checked = 0
    for command in typer.main.get_command(app).commands.values():
        for info in _path_infos(command):
            assert getattr(info, "parser", None) is options.path_value, info
            checked += 1
    assert checked >= 25, checked  # every command has at least one path; most several
    with pytest.raises(Exception, match="empty path"):
        options.path_value("")
    assert options.path_value(".") == Path(".") and options.path_value(Path("x")) == Path("x")


def _path_infos(command: Any) -> list[Any]:
    """The Typer parameter declarations of a command (and its subcommands) whose type holds Path."""
    import inspect
    import typing

    from biomedvr_cli.cli.options import _mentions_path

    infos = []
    for sub in getattr(command, "commands", {}).values():
        infos += _path_infos(sub)
    callback = getattr(command, "callback", None)
    if callback is None:
        return infos
    hints = typing.get_type_hints(callback)
    for name, parameter in inspect.signature(callback).parameters.items():
        if _mentions_path(hints.get(name)):
            infos.append(parameter.default)
    return infos


def test_a_damaged_benchmark_job_is_redone_with_a_warning(world: World, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "b"
    args = [str(a) for a in ["benchmark", world.tree, "--methods", "zs-attributes", "--seeds", "1", "--backbone",
                             world.spec, "--out", out]]
    assert runner.invoke(app, args).exit_code == 0
    (job,) = (out / "jobs").iterdir()
    good = json.loads(job.read_text())
    for damage in ({**good, "metrics": {}}, {**good, "dataset": "another"}, "not json"):
        job.write_text(damage if isinstance(damage, str) else json.dumps(damage))
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stderr
        assert f"warning: b/jobs/{job.name} is damaged" in result.stderr and "1 job(s) run" in result.stderr
        assert json.loads(job.read_text())["metrics"]["accuracy"] == good["metrics"]["accuracy"]
    result = runner.invoke(app, args)  # whole again: taken from the store, no warning
    assert "is damaged" not in result.stderr and "0 job(s) run, 1 already stored" in result.stderr


def test_a_benchmark_without_a_finished_job_lists_no_plot(world: World, tmp_path: Path,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import biomedvr_cli.benchmark.runner as runner_module
    from biomedvr_cli.errors import InvalidInputError

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise InvalidInputError("no", "none")

    monkeypatch.setattr(runner_module, "run_method", fails)
    out = tmp_path / "b"
    (out).mkdir()
    (out / "accuracy_vs_shots.png").write_bytes(b"stale")
    (out / "summary.json").write_text(json.dumps({"benchmark": {}, "summary": []}))  # an earlier run's folder
    result = runner.invoke(app, [str(a) for a in ["benchmark", world.tree, "--methods", "zs-attributes", "--seeds",
                                                  "1", "--backbone", world.spec, "--out", out]])
    assert result.exit_code == 3, result.stderr
    assert "accuracy_vs_shots.png" not in result.stderr and not (out / "accuracy_vs_shots.png").exists()


# ----------------------------------------------------------------------------- round 2: the library and files


@pytest.fixture(scope="module")
def predictor(world: World):  # noqa: F811
    import biomedvr

    return biomedvr.load(world.adapter, backbone=world.spec)


def test_assess_checks_its_level_and_takes_an_empty_batch(predictor) -> None:
    import torch

    from biomedvr_cli.errors import UsageError

    pixels = torch.zeros(2, 3, predictor.image_size, predictor.image_size, dtype=torch.uint8)
    for level in (2, "a", 0.0):
        with pytest.raises(UsageError, match="coverage level"):
            predictor.assess(pixels, level=level)
    with pytest.raises(UsageError, match="batch_size"):
        predictor.assess(pixels, batch_size=0)
    empty = predictor.assess(pixels[:0], level=0.8)
    assert tuple(empty.probs.shape) == (0, len(predictor.classes)) and tuple(empty.sets.shape) == (0, len(predictor.classes))
    assert empty.outliers is not None and empty.outliers.numel() == 0
    assert predictor.assess(pixels[:0]).sets is None


def test_odd_pil_images_are_converted_or_refused_with_the_projects_error(predictor) -> None:
    from PIL import Image

    from biomedvr_cli.errors import InvalidInputError

    image = Image.new("RGB", (40, 30), (200, 100, 50))
    assert predictor.classify(image.convert("La")) == predictor.classify(image.convert("LA"))  # premultiplied alpha
    with pytest.raises(InvalidInputError, match=r"no pixels \(0 x 0\)"):
        predictor.classify(Image.new("RGB", (0, 0)))
    closed = image.copy()
    closed.close()
    with pytest.raises(InvalidInputError, match="closed PIL image"):
        predictor.classify(closed)


def test_in_memory_labels_follow_the_class_name_rules_of_files(world: World) -> None:  # noqa: F811
    import biomedvr
    from biomedvr_cli.errors import InvalidInputError, UsageError
    from biomedvr_cli.pipeline.images import memory_images

    pairs = [(p, p.parent.name) for p in sorted((world.tree / "train").glob("*/*.png"))]
    spaced = memory_images([(img, f"  {label} " if i % 2 else label) for i, (img, label) in enumerate(pairs)])
    assert spaced.source.classes == sorted({label for _, label in pairs})
    with pytest.raises(InvalidInputError, match="differ only in letter case"):
        memory_images([(pairs[0][0], pairs[0][1].upper()), *pairs[1:]])
    with pytest.raises(UsageError, match="progress must be a function"):
        biomedvr.fit(pairs, shots=1, backbone=world.spec, attributes=world.tree / "attributes.json", progress=5)


def _one_class_file(path: Path) -> Path:
    sentences = {k: [f"a {k} sentence about the one class number {i}" for i in range(2)]
                 for k in ("descriptive", "distinctive", "confusion")}
    path.write_text(json.dumps({"schema_version": 1, "task": "", "classes": {"nevus": sentences}}))
    return path


def test_attribute_files_need_two_classes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["attributes", "validate", str(_one_class_file(tmp_path / "one.json"))])
    assert result.exit_code == 3 and "at least two are needed" in result.stderr, result.stderr
    refs = {}
    for kind in ("descriptive", "distinctive", "confusion"):
        refs[kind] = tmp_path / f"{kind}.json"
        refs[kind].write_text(json.dumps({c: [f"a {kind} sentence about {c}, long enough"] for c in ("melanoma", "nevus")}))
    result = runner.invoke(app, ["attributes", "import", *[a for k, p in refs.items() for a in (f"--{k}", str(p))],
                                 "--class", "nevus", "--out", str(tmp_path / "o.json")])
    assert result.exit_code == 3 and "at least two are needed" in result.stderr, result.stderr
    assert not (tmp_path / "o.json").exists()


def test_an_export_inside_or_around_its_source_is_refused(tmp_path: Path, tiny_backbone_spec: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "exp"
    assert runner.invoke(app, ["backbones", "export", tiny_backbone_spec, str(source)]).exit_code == 0
    before = sorted(p.name for p in source.iterdir())
    result = runner.invoke(app, ["backbones", "export", f"local-dir:{source}", str(source / "sub")])
    assert result.exit_code == 2 and "is inside the backbone folder exp" in result.stderr, result.stderr
    monkeypatch.chdir(source)
    result = runner.invoke(app, ["backbones", "export", f"local-dir:{source}", str(tmp_path), "--force"])
    assert result.exit_code == 2 and "is around the backbone folder exp" in result.stderr, result.stderr
    assert sorted(p.name for p in source.iterdir()) == before


def test_an_export_manifest_that_is_a_folder_is_exit_4_naming_it(tmp_path: Path, world: World) -> None:  # noqa: F811
    source = tmp_path / "exp"
    assert runner.invoke(app, ["backbones", "export", world.spec, str(source)]).exit_code == 0
    (source / "biomedvr-export.json").unlink()
    (source / "biomedvr-export.json").mkdir()
    result = runner.invoke(app, ["predict", str(world.good), "--adapter", str(world.adapter), "--backbone",
                                 f"local-dir:{source}"])
    assert result.exit_code == 4 and "biomedvr-export.json is a folder" in result.stderr, result.stderr


def test_predict_json_escapes_non_utf8_file_names_like_the_csv(tmp_path: Path, world: World) -> None:  # noqa: F811
    import os

    name = os.fsdecode(b"bad\xff\xfename.png")
    shutil.copyfile(world.good, tmp_path / name)
    result = runner.invoke(app, ["predict", str(tmp_path / name), *["--adapter", str(world.adapter), "--backbone",
                                                                    world.spec], "--json"])
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)["predictions"]
    assert row["file"].endswith("bad\\xff\\xfename.png") and row["file"].encode("utf-8")


def test_csv_prediction_sets_split_back_into_class_names() -> None:
    from biomedvr_cli.cli.trust_output import trust_cells

    names = ["eos;ino phil", "back\\slash", "plain"]
    (cell,) = trust_cells({"prediction_set": names}, ["prediction_set"])
    import re

    parts = [re.sub(r"\\(.)", r"\1", p) for p in re.split(r"(?<!\\);", cell.replace("\\\\", "\0"))]
    assert [p.replace("\0", "\\") for p in parts] == names


def test_benchmark_grouping_notices_are_warnings(world: World, tmp_path: Path) -> None:  # noqa: F811
    rows = ["path,label,split,PatientID"]
    for split in ("train", "test"):
        for folder in sorted((world.tree / split).iterdir()):
            rows += [f"{image},{folder.name},{split},{split}{i}" for i, image in enumerate(sorted(folder.glob("*.png")))]
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    result = runner.invoke(app, [str(a) for a in ["benchmark", manifest, "--attributes", world.tree / "attributes.json",
                                                  "--methods", "zs-attributes", "--seeds", "1", "--backbone", world.spec,
                                                  "--out", tmp_path / "b"]])
    assert result.exit_code == 0, result.stderr
    assert "warning: m: m.csv: images are grouped by column 'PatientID'" in result.stderr, result.stderr


def test_predict_csv_keeps_spreadsheets_from_running_names_as_formulas() -> None:
    from biomedvr_cli.cli.commands.predict import _csv_text

    rows = [{"file": "=cmd|' /C calc'!A0.png", "prediction": "@sum", "top": [{"class": "+x", "probability": 0.5}]},
            {"file": "-2.5", "error": "=bad"}]
    lines = _csv_text(rows, 1).splitlines()
    assert lines[1] == "'=cmd|' /C calc'!A0.png,'@sum,'+x,0.500000,"
    assert lines[2].startswith("-2.5,") and lines[2].endswith(",'=bad")


def test_benchmark_csvs_keep_spreadsheets_from_running_names_as_formulas() -> None:
    from biomedvr_cli.benchmark.report import EXTRA, HEADLINE, csv_text, jobs_csv_text

    stat = {"mean": 0.5, "std": 0.1}
    summary = [{"dataset": "=HYPERLINK(\"x\")", "method": "+m", "shots": 4, "n": 3, "fit_seconds": 1.0,
                **{m: stat for m in HEADLINE + EXTRA}}]
    assert csv_text(summary).splitlines()[1].startswith("\"'=HYPERLINK(\"\"x\"\")\",'+m,4,3,")
    job = {"dataset": "@data", "method": "-m", "shots": 1, "seed": 0, "fit_seconds": 2.0, "train_images": 4,
           "val_images": 4, "test_images": 8, "metrics": {m: 0.5 for m in HEADLINE + EXTRA}}
    assert jobs_csv_text([job]).splitlines()[1].startswith("'@data,'-m,1,0,0.500000")


def test_evaluate_refuses_a_group_column_it_would_ignore(predictor, world: World) -> None:  # noqa: F811
    import biomedvr
    from biomedvr_cli.errors import UsageError

    with pytest.raises(UsageError, match="evaluate takes no group_column"):
        biomedvr.evaluate(world.tree, predictor, group_column="PatientID")

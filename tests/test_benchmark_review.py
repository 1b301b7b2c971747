"""`benchmark` and the Python API under a hostile review (2026-12-07): every defect it reproduced, fixed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from biomedvr_cli.benchmark.protocol import load_suite
from biomedvr_cli.cli.app import app
from biomedvr_cli.errors import InvalidInputError, UsageError
from tests.conftest import make_color_tree, write_color_attributes

runner = CliRunner()


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = make_color_tree(tmp_path / "colours", per_class=4, size=32, splits=("train", "test"))
    write_color_attributes(root / "attributes.json")
    return root


def bench(*args: object):
    return runner.invoke(app, ["benchmark", *map(str, args)])


def _suite(path: Path, datasets: list[dict], **fields: object) -> Path:
    path.write_text(json.dumps({"datasets": datasets, **fields}))
    return path


def _manifest(tree: Path) -> Path:
    rows = ["path,label,split,PatientID"]
    for i, png in enumerate(sorted(tree.rglob("*.png"))):
        rows.append(f"{png.relative_to(tree)},{png.parent.name},{png.parent.parent.name},P{i % 3}")
    (tree / "man.csv").write_text("\n".join(rows) + "\n")
    return tree / "man.csv"


def test_suite_column_fields_must_be_text_and_null_never_turns_grouping_off(tree: Path) -> None:
    _manifest(tree)
    for field, value in (("group_column", None), ("group_column", 5), ("split_column", ["a"])):
        suite = _suite(tree.parent / "s.json", [{"name": "c", "images": "colours/man.csv", field: value}])
        with pytest.raises(InvalidInputError, match=f"datasets\\[0\\].{field}"):
            load_suite(suite)
    # "none" as text is the documented way to go without grouping.
    suite = _suite(tree.parent / "s.json", [{"name": "c", "images": "colours/man.csv", "group_column": "none"}])
    assert load_suite(suite).datasets[0].group_column == "none"


def test_column_options_with_a_suite_are_refused_not_ignored(tree: Path, tiny_backbone_spec: str) -> None:
    suite = _suite(tree.parent / "s.json", [{"name": "c", "images": "colours"}], backbone=tiny_backbone_spec)
    for option in (["--group-column", "none"], ["--label-column", "x"], ["--split-column", "x"],
                   ["--path-column", "x"]):
        result = bench("--suite", suite, *option, "--out", tree.parent / "o")
        assert result.exit_code == 2 and option[0] in result.stderr and "per dataset" in result.stderr
    assert not (tree.parent / "o").exists()


def test_keys_of_the_other_dataset_kind_repeated_keys_and_both_epoch_fields_are_refused(tmp_path: Path) -> None:
    cases = {
        "sandbox with test": ([{"name": "b", "sandbox_task": "blood-smear", "test": "nowhere"}], {}, "test"),
        "images with shift": ([{"name": "b", "images": "x", "shift": "stain"}], {}, "shift"),
        "images with pool": ([{"name": "b", "images": "x", "pool_per_class": 3}], {}, "pool_per_class"),
        "both epochs": ([{"name": "b", "sandbox_task": "blood-smear"}], {"epochs": 1, "epoch_scale": 0.5},
                        "epoch_scale"),
        "no methods": ([{"name": "b", "sandbox_task": "blood-smear"}], {"methods": []}, "methods"),
    }
    for name, (datasets, fields, word) in cases.items():
        suite = _suite(tmp_path / "s.json", datasets, **fields)
        with pytest.raises(InvalidInputError, match=word):
            load_suite(suite)
    (tmp_path / "dup.json").write_text('{"datasets": [{"name": "b", "sandbox_task": "blood-smear"}], '
                                       '"seeds": 1, "seeds": 100}')
    with pytest.raises(InvalidInputError, match='"seeds" appears twice'):
        load_suite(tmp_path / "dup.json")


def test_an_unknown_method_in_a_suite_is_that_file_s_error(tmp_path: Path) -> None:
    suite = _suite(tmp_path / "s.json", [{"name": "b", "sandbox_task": "blood-smear"}], methods=["nope"])
    result = bench("--suite", suite, "--out", tmp_path / "o")
    assert result.exit_code == 3 and "s.json: methods: unknown method 'nope'" in result.stderr


def test_a_sandbox_task_file_named_like_an_identifier_is_refused(tmp_path: Path) -> None:
    from biomedvr_cli.sandbox.tasks import load_task

    task = load_task("blood-smear")
    (tmp_path / "123-45-6789.json").write_text(task.source.read_text() if task.source else "{}")
    suite = _suite(tmp_path / "s.json", [{"name": "b", "sandbox_task": "123-45-6789.json"}])
    result = bench("--suite", suite, "--backbone", "sandbox", "--methods", "zs-classname", "--out", tmp_path / "o")
    assert result.exit_code == 3 and "sandbox task" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_relative_local_dir_backbone_is_read_from_the_suite_s_folder(tmp_path: Path) -> None:
    (tmp_path / "sub" / "bbdir").mkdir(parents=True)
    suite = _suite(tmp_path / "sub" / "s.json", [{"name": "b", "sandbox_task": "blood-smear"}],
                   backbone="local-dir:bbdir")
    assert load_suite(suite).backbone == f"local-dir:{(tmp_path / 'sub' / 'bbdir').resolve()}"
    absolute = _suite(tmp_path / "a.json", [{"name": "b", "sandbox_task": "blood-smear"}], backbone="sandbox")
    assert load_suite(absolute).backbone == "sandbox"
    weights = _suite(tmp_path / "sub" / "w.json", [{"name": "b", "sandbox_task": "blood-smear"}],
                     backbone="ViT-B-16:w/weights.pt")
    assert load_suite(weights).backbone == f"ViT-B-16:{(tmp_path / 'sub' / 'w' / 'weights.pt').resolve()}"
    tagged = _suite(tmp_path / "t.json", [{"name": "b", "sandbox_task": "blood-smear"}], backbone="ViT-B-16:openai")
    assert load_suite(tagged).backbone == "ViT-B-16:openai"


def test_the_suite_file_is_an_input_no_report_replaces(tmp_path: Path) -> None:
    (tmp_path / "so" / "jobs").mkdir(parents=True)
    suite = _suite(tmp_path / "so" / "summary.json", [{"name": "b", "sandbox_task": "blood-smear"}])
    before = suite.read_text()
    result = bench("--suite", suite, "--backbone", "sandbox", "--methods", "zs-classname", "--out", tmp_path / "so")
    assert result.exit_code == 2 and suite.read_text() == before


def test_out_may_not_sit_beside_class_folders_of_a_manifest_s_images(tree: Path, tiny_backbone_spec: str) -> None:
    _manifest(tree)
    out = tree / "test" / "newout"
    result = bench(tree / "man.csv", "--group-column", "none", "--backbone", tiny_backbone_spec,
                   "--methods", "zs-classname", "--out", out)
    assert result.exit_code == 2 and "--out" in result.stderr
    assert not out.exists()
    ok = bench(tree / "man.csv", "--group-column", "none", "--backbone", tiny_backbone_spec,
               "--methods", "zs-classname", "--out", tree.parent / "results")
    assert ok.exit_code == 0, ok.stderr


def test_a_damaged_job_file_is_run_again_and_reports_stay_whole(tree: Path, tiny_backbone_spec: str) -> None:
    out = tree.parent / "ci"
    args = (tree, "--backbone", tiny_backbone_spec, "--methods", "linear-probe", "--shots", "1", "--seeds", "1",
            "--out", out)
    assert bench(*args).exit_code == 0
    job = next((out / "jobs").glob("*.json"))
    first = json.loads(job.read_text())
    for damage in ({"fit_seconds": None}, {"metrics": {"accuracy": 0.5, "nll": "oops"}}, {"train_images": -1}):
        job.write_text(json.dumps({**json.loads(job.read_text()), **damage}))
        result = bench(*args)
        assert result.exit_code == 0, result.stderr
        assert "damaged" in result.stderr and "run again" in result.stderr
        stored = json.loads(job.read_text())
        assert isinstance(stored["fit_seconds"], float) and stored["train_images"] == first["train_images"]
        assert isinstance(stored["metrics"]["nll"], float)
    assert "linear-probe" in (out / "summary.md").read_text() and "linear-probe" in (out / "jobs.csv").read_text()


def test_a_test_set_of_unreadable_images_fails_its_jobs_with_one_line(tree: Path, tiny_backbone_spec: str) -> None:
    for png in (tree / "test").rglob("*.png"):
        png.write_text("garbage")
    result = bench(tree, "--backbone", tiny_backbone_spec, "--methods", "zs-classname,linear-probe", "--shots", "1",
                   "--seeds", "1", "--out", tree.parent / "x")
    assert result.exit_code == 3, result.stderr
    assert "none of the" in result.stderr and "test images could be read" in result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr


def test_decoding_options_are_part_of_a_job_s_settings(tree: Path, tiny_backbone_spec: str) -> None:
    out = tree.parent / "b1"
    args = (tree, "--backbone", tiny_backbone_spec, "--methods", "zs-classname", "--out", out)
    assert bench(*args).exit_code == 0
    assert bench(*args).exit_code == 0  # the same settings: taken from the store
    changed = bench(*args, "--max-pixels", "5000")
    assert changed.exit_code == 2 and "different settings" in changed.stderr


def test_test_images_that_are_also_training_images_leave_the_pool(tree: Path, tiny_backbone_spec: str) -> None:
    result = bench(tree / "train", "--test", tree / "train", "--attributes", tree / "attributes.json",
                   "--backbone", tiny_backbone_spec, "--methods", "linear-probe", "--shots", "1", "--seeds", "1",
                   "--out", tree.parent / "x4")
    assert result.exit_code == 3 and "also test images" in result.stderr
    # Part of the test set in the pool: those are left out and the rest is drawn from.
    shutil.copytree(tree / "train", tree.parent / "more")
    result = bench(tree.parent / "more", "--test", tree / "train", "--attributes", tree / "attributes.json",
                   "--backbone", tiny_backbone_spec, "--methods", "linear-probe", "--shots", "1", "--seeds", "1",
                   "--out", tree.parent / "x5")
    assert result.exit_code == 0 and "also test images" not in result.stderr  # copies are other files


def test_a_pipe_in_a_dataset_name_does_not_split_the_markdown_row() -> None:
    from biomedvr_cli.benchmark.report import markdown_text, summarize

    results = [{"dataset": "a|b", "method": "zs-classname", "shots": 0, "seed": 0, "fit_seconds": 0.1,
                "metrics": {"accuracy": 0.5}}]
    lines = markdown_text(summarize(results)).splitlines()
    assert lines[2].replace("\\|", "").count("|") == lines[0].count("|")


def test_out_holding_foreign_files_and_an_empty_jobs_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "o" / "jobs").mkdir(parents=True)
    (tmp_path / "o" / "summary.csv").write_text("mine\n")
    result = bench("--suite", _suite(tmp_path / "s.json", [{"name": "b", "sandbox_task": "blood-smear"}]),
                   "--backbone", "sandbox", "--methods", "zs-classname", "--out", tmp_path / "o")
    assert result.exit_code == 2 and (tmp_path / "o" / "summary.csv").read_text() == "mine\n"


def test_python_api_settings_of_the_wrong_type_say_which_field() -> None:
    from biomedvr_cli.data import DecodeOptions
    from biomedvr_cli.method.config import MethodConfig
    from biomedvr_cli.method.recipes import Recipe

    for kwargs, word in ((dict(k="3"), "k must be a whole number"), (dict(feature_head="no"), "true or false"),
                         (dict(beta="1"), "beta must be a number"), (dict(vr_frame=2.5), "vr_frame")):
        with pytest.raises(ValueError, match=word):
            MethodConfig(**kwargs)
    for kwargs, word in ((dict(lr="0.1"), "lr must be a number"), (dict(momentum="0.9"), "momentum"),
                         (dict(crop_scale=5), "crop_scale"), (dict(crop_scale=(0.5,)), "crop_scale"),
                         (dict(epochs="1"), "'1'"), (dict(flip="no"), "flip")):
        with pytest.raises(UsageError, match=word):
            Recipe(name="r", **kwargs)
    with pytest.raises(UsageError, match="whole number"):
        DecodeOptions(max_pixels="5")  # type: ignore[arg-type]


def test_python_api_refuses_non_finite_arrays_and_prints_short_reprs(tiny_colour_adapter) -> None:
    import biomedvr

    _, adapter_path, spec = tiny_colour_adapter
    predictor = biomedvr.load(adapter_path, backbone=spec)
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        predictor.classify(np.full((32, 32), np.nan, np.float32))
    assert len(repr(predictor)) < 300 and "classes=" in repr(predictor)
    assert len(repr(predictor.adapter)) < 300


def test_a_device_other_than_the_loaded_backbone_s_is_refused(tiny_colour_adapter) -> None:
    import biomedvr

    _, adapter_path, spec = tiny_colour_adapter
    backbone = biomedvr.load_backbone(spec, device="cpu")
    with pytest.raises(UsageError, match="already loaded on cpu"):
        biomedvr.load(adapter_path, backbone=backbone, device="cuda")
    assert biomedvr.load(adapter_path, backbone=backbone, device="cpu").backbone is backbone
    assert biomedvr.load(adapter_path, backbone=backbone).backbone is backbone


def test_an_interrupted_benchmark_says_its_finished_jobs_are_kept(tree: Path, tiny_backbone_spec: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import biomedvr_cli.benchmark.runner as runner_module

    real, calls = runner_module.run_method, []

    def second_job_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "run_method", second_job_interrupted)
    out = tree.parent / "stopped"
    result = bench(tree, "--backbone", tiny_backbone_spec, "--methods", "linear-probe", "--shots", "1",
                   "--seeds", "2", "--out", out)
    assert result.exit_code == 130 and "1 finished job(s) are kept" in result.stderr and "resume" in result.stderr
    assert len(list((out / "jobs").glob("*.json"))) == 1
    monkeypatch.setattr(runner_module, "run_method", real)
    resumed = bench(tree, "--backbone", tiny_backbone_spec, "--methods", "linear-probe", "--shots", "1",
                    "--seeds", "2", "--out", out)
    assert resumed.exit_code == 0 and "1 already stored" in resumed.stderr + resumed.stdout


def test_a_benchmark_interrupted_in_its_first_job_says_none_is_kept(tree: Path, tiny_backbone_spec: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import biomedvr_cli.benchmark.runner as runner_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "run_method", interrupted)
    out = tree.parent / "stopped-at-once"
    result = bench(tree, "--backbone", tiny_backbone_spec, "--methods", "linear-probe", "--shots", "1", "--out", out)
    assert result.exit_code == 130 and "no job had finished, so none is kept" in result.stderr
    assert "are kept" not in result.stderr and not list((out / "jobs").glob("*.json"))


def test_a_folder_with_a_test_csv_takes_the_csv_s_columns(tree: Path, tiny_backbone_spec: str) -> None:
    rows = ["file,dx"] + [f"{p.relative_to(tree)},{p.parent.name}" for p in sorted((tree / "test").rglob("*.png"))]
    (tree / "test.csv").write_text("\n".join(rows) + "\n")
    result = bench(tree / "train", "--test", tree / "test.csv", "--attributes", tree / "attributes.json",
                   "--path-column", "file", "--label-column", "dx", "--backbone", tiny_backbone_spec,
                   "--methods", "zs-classname", "--out", tree.parent / "o")
    assert result.exit_code == 0, result.stderr


def test_reports_may_go_in_the_manifest_s_own_folder_and_an_empty_jobs_folder_resumes(
        tree: Path, tiny_backbone_spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _manifest(tree)  # man.csv at the root of the class folders: the project folder
    monkeypatch.chdir(tree)
    args = ("man.csv", "--group-column", "none", "--backbone", tiny_backbone_spec, "--methods", "zs-classname")
    assert bench(*args).exit_code == 0  # the default --out, benchmark-results/ beside the manifest
    (tree / "again" / "jobs").mkdir(parents=True)  # a run killed before its first job was stored
    assert bench(*args, "--out", "again").exit_code == 0

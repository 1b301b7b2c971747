"""`biomedvr benchmark` on a tiny random backbone: every method runs, table = JSON, resume, suites."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.benchmark.methods import GROUPS, METHODS, resolve_methods
from biomedvr_cli.benchmark.protocol import DatasetSpec, make_jobs, parse_shots
from biomedvr_cli.benchmark.report import best_rows, pct, summarize, table_rows
from biomedvr_cli.errors import InvalidInputError, UsageError
from tests.conftest import make_color_tree, write_color_attributes

runner = CliRunner()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = make_color_tree(tmp_path_factory.mktemp("bench") / "colours", per_class=5, size=32, splits=("train", "test"))
    write_color_attributes(root / "attributes.json")
    return root


@pytest.fixture(scope="module")
def all_methods_run(tree: Path, tiny_backbone_spec: str, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench-out") / "results"
    result = runner.invoke(app, ["benchmark", str(tree), "--backbone", tiny_backbone_spec, "--methods", "all",
                                 "--shots", "1", "--seeds", "1", "--epochs", "1", "--out", str(out), "--device", "cpu",
                                 "--json"])
    assert result.exit_code == 0, result.stderr + result.stdout
    return out, json.loads(result.stdout)


def test_every_method_runs_and_reports(all_methods_run) -> None:
    out, doc = all_methods_run
    methods = [r["method"] for r in doc["summary"]]
    assert methods == list(GROUPS["all"])
    jobs = {j["method"]: j for j in doc["jobs"]}
    for row in doc["summary"]:
        assert row["shots"] == (0 if METHODS[row["method"]].shot_free else 1)
        for metric in ("accuracy", "balanced_accuracy", "macro_f1", "ece"):  # one seed: the summary is that job
            assert row[metric]["mean"] == pytest.approx(jobs[row["method"]]["metrics"][metric]) and row[metric]["std"] == 0.0
        cm = jobs[row["method"]]["confusion_matrix"]
        assert row["accuracy"]["mean"] == pytest.approx(sum(cm[i][i] for i in range(len(cm))) / sum(map(sum, cm)))
    assert jobs["linear-probe"]["metrics"]["accuracy"] > 0.9  # colours are linearly separable even in random features
    assert jobs["biomedvr"]["train_images"] == 3 and jobs["biomedvr"]["val_images"] == 3 and jobs["biomedvr"]["test_images"] == 15
    assert "validation" in doc["benchmark"]["selection"] and "never the test set" in doc["benchmark"]["selection"]
    assert len(list((out / "jobs").glob("*.json"))) == len(GROUPS["all"])
    for name in ("summary.csv", "jobs.csv", "summary.md", "summary.json", "accuracy_vs_shots.png"):
        assert (out / name).stat().st_size > 100, name
    assert not list(out.rglob("*.tmp"))
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("dataset,method,shots,seeds,accuracy_mean,accuracy_std") and len(csv_lines) == 1 + len(methods)
    raw = (out / "summary.json").read_text()
    assert str(tree) not in raw  # reports carry names, not paths


def test_every_trained_method_ends_fitted_on_support_and_validation(all_methods_run) -> None:
    """Equal labels (issue 17): no method is compared on fewer labelled images than another."""
    _, doc = all_methods_run
    for job in doc["jobs"]:
        expected = 0 if METHODS[job["method"]].shot_free else job["train_images"] + job["val_images"]
        assert job["fitted_images"] == expected, job["method"]
    jobs = {j["method"]: j for j in doc["jobs"]}
    assert "refitted on support + validation" in jobs["linear-probe"]["selection"]
    for published in ("coop", "ar", "attrvr", "biomedvr-paper"):
        assert "support + validation, last epoch (as published)" in jobs[published]["selection"], published
    assert "labelled images" in doc["benchmark"]["selection"]


def test_published_vr_methods_record_their_untrained_start(all_methods_run) -> None:
    """start_accuracy: the test accuracy before training, for the methods run as published (sandbox property b)."""
    out, doc = all_methods_run
    for job in doc["jobs"]:
        if METHODS[job["method"]].recipe == "paper":
            hits = job["start_accuracy"] * job["test_images"]
            assert 0.0 <= job["start_accuracy"] <= 1.0 and hits == pytest.approx(round(hits)), job["method"]
        else:
            assert job["start_accuracy"] is None, job["method"]
    header, *rows = (out / "jobs.csv").read_text().splitlines()
    assert header.endswith(",start_accuracy")
    by_method = {r.split(",")[1]: r.split(",")[-1] for r in rows}
    assert by_method["ar"] != "" and by_method["linear-probe"] == ""


def test_vr_jobs_record_what_their_vr_stage_did(all_methods_run) -> None:
    """The job JSON carries the fit's VR report: skipped (and why), epochs run, kept."""
    _, doc = all_methods_run
    jobs = {j["method"]: j for j in doc["jobs"]}
    # 3 validation images: no trained epoch could be clearly better, so the default skips the stage
    assert jobs["biomedvr"]["vr"]["skipped"].startswith("the untrained views get ") and jobs["biomedvr"]["vr"]["epochs_run"] == 0
    assert jobs["ar"]["vr"]["skipped"] is None and jobs["ar"]["vr"]["ran"]  # as published: no validation, every epoch
    for job in doc["jobs"]:
        assert (job["vr"] is None) == (METHODS[job["method"]].family != "vr"), job["method"]
        assert (job["vr_seconds"] is None) == (job["vr"] is None), job["method"]


def test_the_probe_refits_on_every_labelled_image(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from sklearn.linear_model import LogisticRegression

    from biomedvr_cli.benchmark import methods

    sizes: list[int] = []
    real_fit = LogisticRegression.fit

    def spy(self, x, y, *args, **kwargs):
        sizes.append(len(y))
        return real_fit(self, x, y, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    gen = torch.Generator().manual_seed(0)
    feats = {"train": (torch.randn(6, 4, generator=gen), torch.tensor([0, 1, 2] * 2)),
             "val": (torch.randn(9, 4, generator=gen), torch.tensor([0, 1, 2] * 3)),
             "test": (torch.randn(5, 4, generator=gen), torch.tensor([0, 1, 2, 0, 1]))}

    class Job:
        dataset = type("D", (), {"classes": ["a", "b", "c"]})()

        def features(self, which):
            return feats[which]

    out = methods.run_linear_probe(methods.METHODS["linear-probe"], Job())  # type: ignore[arg-type]
    assert sizes[:-1] == [6] * len(methods.LINEAR_PROBE_C) and sizes[-1] == 15
    assert out.fitted_images == 15 and out.logits.shape == (5, 3)


def test_table_agrees_with_json_and_resume_skips_done_jobs(all_methods_run, tree: Path, tiny_backbone_spec: str) -> None:
    out, doc = all_methods_run
    result = runner.invoke(app, ["benchmark", str(tree), "--backbone", tiny_backbone_spec, "--methods", "all",
                                 "--shots", "1", "--seeds", "1", "--epochs", "1", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    assert f"0 job(s) run, {len(GROUPS['all'])} already stored" in result.stderr
    table_lines = [line for line in result.stderr.splitlines() if "│" in line]
    for row in doc["summary"]:
        line = next(line for line in table_lines if re.search(rf"│ {re.escape(row['method'])}\s+│", line))
        cells = [c.strip() for c in line.split("│")[1:-1]]
        assert cells[4:8] == [pct(row[m]) for m in ("accuracy", "balanced_accuracy", "macro_f1", "ece")]
    # The Markdown report is the same table.
    md = (out / "summary.md").read_text()
    for cells in table_rows(doc["summary"]):
        assert cells[1] in md and cells[5] in md


def test_resume_runs_only_missing_jobs_and_refuses_changed_settings(all_methods_run, tree: Path, tiny_backbone_spec: str) -> None:
    out, doc = all_methods_run
    victim = out / "jobs" / "colours__ar__k1__s0.json"
    before = {p.name: p.read_text() for p in (out / "jobs").glob("*.json")}
    victim.unlink()
    args = ["benchmark", str(tree), "--backbone", tiny_backbone_spec, "--methods", "ar,zs-classname,linear-probe",
            "--shots", "1", "--seeds", "1", "--epochs", "1", "--out", str(out), "--device", "cpu", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["run"] == {"jobs_run": 1, "jobs_stored": 2}
    assert victim.is_file()
    for name, text in before.items():
        if name != victim.name:
            assert (out / "jobs" / name).read_text() == text  # untouched
    old_ar = next(j for j in doc["jobs"] if j["method"] == "ar")
    new_ar = next(j for j in again["jobs"] if j["method"] == "ar")
    assert new_ar["metrics"] == old_ar["metrics"]  # a job is reproducible from its seed
    changed = [a if a != "1" or args[i - 1] != "--epochs" else "2" for i, a in enumerate(args)]
    result = runner.invoke(app, changed)
    assert result.exit_code == 2 and "different settings" in result.stderr
    result = runner.invoke(app, [*changed, "--force"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["run"] == {"jobs_run": 1, "jobs_stored": 2}  # zero-shot and probe ignore epochs


def test_suite_with_a_sandbox_task_and_a_folder(tree: Path, tiny_backbone_spec: str, tmp_path: Path) -> None:
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({
        "datasets": [
            {"name": "blood", "sandbox_task": "blood-smear", "shift": "default", "pool_per_class": 6, "test_per_class": 4},
            {"name": "colours", "images": str(tree)},
        ],
        "methods": ["zs-attributes", "linear-probe"], "shots": [2], "seeds": 2,
    }))
    result = runner.invoke(app, ["benchmark", "--suite", str(suite), "--backbone", tiny_backbone_spec, "--out",
                                 str(tmp_path / "out"), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    keys = [(r["dataset"], r["method"], r["shots"], r["n"]) for r in doc["summary"]]
    assert keys == [("blood", "zs-attributes", 0, 1), ("blood", "linear-probe", 2, 2),
                    ("colours", "zs-attributes", 0, 1), ("colours", "linear-probe", 2, 2)]
    blood = doc["benchmark"]["datasets"][0]
    assert blood["shift"] == "default" and blood["test_images"] == 20 and len(blood["classes"]) == 5
    # Different seeds draw different support sets.
    probe = [j for j in doc["jobs"] if j["dataset"] == "blood" and j["method"] == "linear-probe" and j["shots"] == 2]
    assert len(probe) == 2 and probe[0]["support_set"] != probe[1]["support_set"]
    assert probe[0]["train_images"] == 10 and probe[0]["val_images"] == 10


def test_usage_errors(tree: Path, tiny_backbone_spec: str, tmp_path: Path) -> None:
    base = ["benchmark", "--backbone", tiny_backbone_spec, "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert runner.invoke(app, base).exit_code == 2  # neither IMAGES nor --suite
    result = runner.invoke(app, [*base, str(tree), "--methods", "nonsense"])
    assert result.exit_code == 2 and "unknown method" in result.stderr
    no_attr = make_color_tree(tmp_path / "plain", per_class=3, size=32, splits=("train", "test"))
    result = runner.invoke(app, [*base, str(no_attr), "--methods", "biomedvr"])
    assert result.exit_code == 2 and "need an attributes file" in result.stderr
    no_test = make_color_tree(tmp_path / "notest", per_class=3, size=32)
    write_color_attributes(no_test / "attributes.json")
    result = runner.invoke(app, [*base, str(no_test), "--methods", "zs-classname"])
    assert result.exit_code == 3 and "--test" in result.stderr
    result = runner.invoke(app, ["benchmark", "--list-methods"])
    assert result.exit_code == 0 and "biomedvr-vr-mask" in result.stderr


def test_too_small_class_fails_that_job_only(tree: Path, tiny_backbone_spec: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["benchmark", str(tree), "--backbone", tiny_backbone_spec, "--methods", "linear-probe",
                                 "--shots", "1,4", "--seeds", "1", "--out", str(tmp_path / "o"), "--device", "cpu", "--json"])
    assert result.exit_code == 3, result.stderr  # 4 shots + 4 validation do not fit in 5 images per class
    doc = json.loads(result.stdout)
    assert [j["shots"] for j in doc["jobs"]] == [1]
    assert doc["failed"][0]["shots"] == 4 and "class" in doc["failed"][0]["error"]


def test_protocol_helpers() -> None:
    assert parse_shots("1,2, 4,2") == [1, 2, 4]
    assert resolve_methods("baselines,ours")[:2] == ["zs-classname", "zs-attributes"]
    assert resolve_methods("biomedvr,ar") == ["biomedvr", "ar"]  # a method name is never read as a group
    ds = [DatasetSpec(name="A b"), DatasetSpec(name="c")]
    jobs = make_jobs(ds, ["zs-classname", "biomedvr"], [1, 2], [0, 1], {"zs-classname"})
    assert len(jobs) == 2 * (1 + 4) and jobs[0].key == "a-b__zs-classname__k0__s0"
    results = [{"dataset": "d", "method": m, "shots": 1, "seed": s, "fit_seconds": 1.0,
                "metrics": {"accuracy": a, "balanced_accuracy": a, "macro_f1": a, "ece": 0.1, "nll": 1.0, "auroc_ovr": None}}
               for m, s, a in (("x", 0, 0.5), ("x", 1, 0.7), ("y", 0, 0.9))]
    rows = summarize(results)
    assert rows[0]["accuracy"]["mean"] == pytest.approx(0.6) and rows[0]["accuracy"]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert pct(rows[0]["accuracy"]) == "60.0 ± 14.1" and rows[0]["auroc_ovr"]["mean"] is None
    assert best_rows(rows) == {1}


# ---------------------------------------------------------------- suite paths and the option merge


def _task_suite(folder: Path) -> Path:
    """A suite in ``folder`` naming a task file by a path relative to the suite, plus a built-in task."""
    from biomedvr_cli.sandbox import TASKS_DIR

    (folder / "tasks").mkdir(parents=True)
    (folder / "tasks" / "mine.json").write_text((TASKS_DIR / "blood-smear.json").read_text(encoding="utf-8"),
                                                encoding="utf-8")
    suite = folder / "suite.json"
    suite.write_text(json.dumps({"datasets": [
        {"name": "mine", "sandbox_task": "tasks/mine.json", "pool_per_class": 3, "test_per_class": 2},
        {"name": "builtin", "sandbox_task": "cervical-cytology", "pool_per_class": 3, "test_per_class": 2},
    ], "methods": ["zs-classname"], "shots": [1], "seeds": 1}))
    return suite


def test_suite_task_file_is_relative_to_the_suite_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from biomedvr_cli.benchmark.protocol import load_suite
    from biomedvr_cli.sandbox.tasks import load_task

    suite = _task_suite(tmp_path / "suites")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    mine, builtin = load_suite(suite).datasets
    assert Path(mine.sandbox_task) == (tmp_path / "suites" / "tasks" / "mine.json").resolve()
    assert load_task(mine.sandbox_task).name == load_task("blood-smear").name
    assert builtin.sandbox_task == "cervical-cytology"  # a built-in name is not a path
    assert mine.describe()["sandbox_task"] == "mine.json"  # reports carry names, not paths
    suite.write_text(json.dumps({"datasets": [{"name": "x", "sandbox_task": 3}]}))
    with pytest.raises(InvalidInputError, match="sandbox_task"):
        load_suite(suite)


def test_suite_with_a_task_file_runs_from_another_folder(tiny_backbone_spec: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _task_suite(tmp_path / "suites")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["benchmark", "--suite", str(suite), "--backbone", tiny_backbone_spec, "--out", "out",
                                 "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [d["sandbox_task"] for d in doc["benchmark"]["datasets"]] == ["mine.json", "cervical-cytology"]
    assert [(r["dataset"], r["method"]) for r in doc["summary"]] == [("mine", "zs-classname"), ("builtin", "zs-classname")]
    assert str(tmp_path) not in (elsewhere / "out" / "summary.json").read_text()


def test_build_request_merges_suite_and_command_line(tmp_path: Path) -> None:
    from biomedvr_cli.benchmark.request import BenchmarkOptions, build_request

    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"datasets": [{"name": "blood", "sandbox_task": "blood-smear"}],
                                 "backbone": "sandbox", "methods": ["zs-classname", "ar"], "shots": [1, 4], "seeds": 2,
                                 "epoch_scale": 0.5, "val_shots": 1}))
    from_suite = build_request(BenchmarkOptions(out=tmp_path / "o", suite=suite))
    assert (from_suite.backbone, from_suite.methods, from_suite.shots, from_suite.seeds, from_suite.val_shots) == (
        "sandbox", ["zs-classname", "ar"], [1, 4], [0, 1], 1)
    assert (from_suite.overrides.epochs, from_suite.overrides.epoch_scale) == (None, 0.5)
    # The command line wins, and --epochs replaces the suite's epoch_scale rather than clashing with it.
    cli = build_request(BenchmarkOptions(out=tmp_path / "o", suite=suite, backbone="biomedclip", methods="ar",
                                         shots="2", seeds=1, epochs=3, val_shots=0, window="40,400"))
    assert (cli.backbone, cli.methods, cli.shots, cli.seeds, cli.val_shots) == ("biomedclip", ["ar"], [2], [0], 0)
    assert (cli.overrides.epochs, cli.overrides.epoch_scale) == (3, None)
    assert cli.decode.window == (40.0, 400.0)
    single = build_request(BenchmarkOptions(out=tmp_path / "o", images=tmp_path / "data.csv", label_column="y"))
    assert single.datasets[0].name == "data" and single.datasets[0].label_column == "y"
    assert (single.backbone, single.shots, single.seeds) == ("biomedclip", [1, 2, 4, 8, 16], [0, 1, 2])
    for bad, message in ((BenchmarkOptions(out=tmp_path), "either IMAGES or --suite"),
                         (BenchmarkOptions(out=tmp_path, suite=suite, name="x"), "describe one dataset"),
                         (BenchmarkOptions(out=tmp_path, suite=suite, epochs=1, epoch_scale=0.5), "both set"),
                         (BenchmarkOptions(out=tmp_path, suite=suite, epochs=0), "--epochs is 0; it must be from 1")):
        with pytest.raises(UsageError, match=message):
            build_request(bad)


def test_method_signature_names_the_head_test_only_where_there_is_a_head() -> None:
    """Stored jobs of methods without a feature head stay valid when the head's test changes."""
    from dataclasses import replace

    from biomedvr_cli.benchmark.methods import Overrides, method_signature

    published = method_signature(METHODS["attrvr"], Overrides())["config"]
    assert "head_test" not in published and published["feature_head"] is False
    ours = method_signature(METHODS["biomedvr"], Overrides())["config"]
    older = method_signature(METHODS["biomedvr-head-accuracy"], Overrides())["config"]
    assert (ours["head_test"], older["head_test"]) == ("either", "accuracy")
    assert method_signature(replace(METHODS["attrvr"], config=replace(METHODS["attrvr"].config, head_test="accuracy")),
                            Overrides()) == method_signature(METHODS["attrvr"], Overrides())


def test_job_and_summary_json_never_hold_a_bare_nan() -> None:
    """An undefined metric (AUROC with one class in a test split) is stored as null, never as NaN."""
    import json
    import math

    from biomedvr_cli.benchmark.store import strict_json

    text = strict_json({"metrics": {"auroc": math.nan, "accuracy": 0.5, "per_class": [math.inf, 1.0]}}, indent=1)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"metrics": {"auroc": None, "accuracy": 0.5, "per_class": [None, 1.0]}}

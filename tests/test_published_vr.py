"""Sandbox property (b): judging AR and AttrVR as published from a benchmark run's recorded starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from biomedvr_cli.errors import InvalidInputError
from biomedvr_cli.sandbox.published_vr import judge_published_vr

BUILTIN = {"blood-smear": "stain", "cervical-cytology": "all", "quiet-task": "none"}
DATASETS = [
    {"name": "blood", "sandbox_task": "blood-smear", "shift": "none"},
    {"name": "blood +stain", "sandbox_task": "blood-smear", "shift": "default"},
    {"name": "cervix +all", "sandbox_task": "cervical-cytology", "shift": "default"},
    {"name": "mine +stain", "sandbox_task": "x.json", "shift": "default"},  # not built in
    {"name": "quiet", "sandbox_task": "quiet-task", "shift": "default"},  # built in, default is no shift
]


def _job(dataset: str, method: str, end: float, start: float | None, seed: int = 0, shots: int = 16) -> dict:
    return {"dataset": dataset, "method": method, "shots": shots, "seed": seed, "metrics": {"accuracy": end},
            "start_accuracy": start}


def _summary(jobs: list[dict], backbone: str = "sandbox", fingerprint: str = "fp") -> dict:
    settings = {m: {"recipe": {"epochs": 400}} for m in ("ar", "attrvr")}
    return {"benchmark": {"backbone": backbone, "backbone_fingerprint": fingerprint, "datasets": DATASETS,
                          "method_settings": settings}, "jobs": jobs}


def _full_run(ar_end: float, attrvr_end: float) -> list[dict]:
    jobs = []
    for ds in ("blood +stain", "cervix +all"):
        for seed in (0, 1):
            jobs += [_job(ds, "ar", ar_end, 0.30, seed), _job(ds, "attrvr", attrvr_end, 0.50, seed)]
    # jobs the property must ignore: an unshifted task, a task file, another K, a default that is no shift
    jobs += [_job("blood", "ar", 0.0, 0.9), _job("mine +stain", "ar", 0.0, 0.9), _job("blood +stain", "ar", 0.0, 0.9, shots=4),
             _job("quiet", "ar", 0.0, 0.9)]
    return jobs


def test_gain_is_end_minus_start_over_shifted_builtin_tasks_and_seeds() -> None:
    judged = judge_published_vr(_summary(_full_run(0.45, 0.48)), BUILTIN, "fp")
    assert judged["datasets"] == ["blood +stain", "cervix +all"]
    rows = {r["method"]: r for r in judged["rows"]}
    assert rows["ar"] == {"method": "ar", "jobs": 4, "start_accuracy": 0.3, "end_accuracy": 0.45, "gain": 0.15}
    assert rows["attrvr"]["gain"] == pytest.approx(-0.02)
    assert [c["ok"] for c in judged["checks"]] == [True, False]
    assert judged["epochs"] == {"ar": 400, "attrvr": 400}


def test_coop_is_reported_against_ar_without_a_target() -> None:
    jobs = _full_run(0.45, 0.6) + [_job("blood +stain", "coop", 0.55, None), _job("cervix +all", "coop", 0.65, None)]
    judged = judge_published_vr(_summary(jobs), BUILTIN)
    ordering = judged["checks"][-1]
    assert ordering["ok"] is None and ordering["value"] == pytest.approx(0.45 - 0.60)


@pytest.mark.parametrize("summary, match", [
    ({"benchmark": {"datasets": {}}, "jobs": []}, "not a list of named datasets"),
    (_summary([{"dataset": "blood +stain", "method": "ar"}]), "without dataset, method or metrics.accuracy"),
    (_summary(["job"]), "without dataset, method or metrics.accuracy"),
    (_summary(_full_run(0.4, 0.4), backbone="biomedclip"), "not the sandbox model"),
    (_summary(_full_run(0.4, 0.4), fingerprint="other"), "other sandbox weights"),
    (_summary([j for j in _full_run(0.4, 0.4) if j["dataset"] != "cervix +all"]), "no ar jobs .* on cervix"),
    (_summary([j | {"start_accuracy": None} for j in _full_run(0.4, 0.4)]), "with a recorded start"),
    ({"jobs": []}, "not a benchmark summary"),
    ([], "not a benchmark summary"),
])
def test_a_run_that_cannot_judge_the_property_says_what_to_run(summary, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        judge_published_vr(summary, BUILTIN, "fp")
    assert "published-vr-suite.json" in info.value.hint


def test_properties_command_refuses_what_it_cannot_judge_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from biomedvr_cli.cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["sandbox", "properties", "--published-vr", str(tmp_path)])
    assert res.exit_code == 3 and "no summary.json" in res.output and "Traceback" not in res.output
    (tmp_path / "summary.json").write_text('{"benchmark": {"datasets": 3}, "jobs": []}')
    res = runner.invoke(app, ["sandbox", "properties", "--published-vr", str(tmp_path)])
    assert res.exit_code == 3 and "not a list of named datasets" in res.output
    res = runner.invoke(app, ["sandbox", "properties", "--published-vr", str(tmp_path), "--weights", str(tmp_path / "w")])
    assert res.exit_code == 2 and "judges the shipped weights" in res.output


@pytest.mark.slow
def test_properties_command_judges_a_real_benchmark_run(tmp_path: Path) -> None:
    """End to end on the shipped sandbox model: benchmark (1 epoch), then `sandbox properties --published-vr`."""
    from typer.testing import CliRunner

    from biomedvr_cli.cli.app import app

    suite = Path(__file__).resolve().parents[1] / "experiments" / "published-vr-suite.json"
    out = tmp_path / "run"
    bench = CliRunner().invoke(app, ["benchmark", "--suite", str(suite), "--seeds", "1", "--epochs", "1",
                                     "--out", str(out), "--json"])
    assert bench.exit_code == 0, bench.output
    jobs = [j for j in json.loads(bench.stdout)["jobs"] if j["method"] == "ar"]
    res = CliRunner().invoke(app, ["sandbox", "properties", "--json", "--n-align", "60", "--per-class", "6",
                                   "--published-vr", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    ar = next(r for r in report["published_vr"]["rows"] if r["method"] == "ar")
    assert ar["jobs"] == 2 and ar["start_accuracy"] == pytest.approx(sum(j["start_accuracy"] for j in jobs) / 2, abs=1e-4)
    assert any(c["name"].startswith("(b) attrvr") for c in report["checks"])

"""experiments/gpu_check.py: exits 0 with a clear line where there is no CUDA; peak table lookup."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_gpu_check_without_cuda_says_so_and_exits_0() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "gpu_check.py")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "CUDA is not available" in out.stdout


def test_peak_table() -> None:
    gpu_check = _load("gpu_check")
    assert gpu_check.peak_for("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_check.peak_for("NVIDIA H100 PCIe") == 756.0
    assert gpu_check.peak_for("NVIDIA H200") == 989.0
    assert gpu_check.peak_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_check.peak_for("Some Future GPU") is None


@pytest.mark.slow
def test_unseen_word_draws_reproduces_the_shipped_draw() -> None:
    """Redrawing with the shipped seed gives back exactly the shipped weights' class-name zero-shot."""
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "unseen_word_draws.py"), "--draws", "2",
                          "--per-class", "6"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split("  ")[0].strip(): line.split()[-2:] for line in out.stdout.splitlines()[1:]}
    assert rows["as loaded"] == rows["seed 1000"]
    assert set(rows) == {"as loaded", "seed 1000", "seed 1001", "mean", "max"}
    draws = [rows["seed 1000"], rows["seed 1001"]]
    for column in range(2):  # the summary rows are computed from the draws
        values = [float(d[column]) for d in draws]
        assert float(rows["mean"][column]) == pytest.approx(sum(values) / 2, abs=1e-3)
        assert float(rows["max"][column]) == pytest.approx(max(values), abs=1e-3)


def _job(folder: Path, dataset: str, method: str, shots: int, seed: int, accuracy: float) -> None:
    import json

    jobs = folder / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    record = {"dataset": dataset, "method": method, "shots": shots, "seed": seed, "metrics": {"accuracy": accuracy}}
    (jobs / f"{dataset}__{method}__k{shots}__s{seed}.json").write_text(json.dumps(record))


def test_goal_table_keeps_two_runs_of_one_method_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    goal_table = _load("goal_table")
    old, new = tmp_path / "run1", tmp_path / "run2"
    _job(old, "task", "zs-attributes", 0, 0, 0.70)
    for seed in range(2):
        _job(old, "task", "linear-probe", 4, seed, 0.80)
        _job(old, "task", "biomedvr", 4, seed, 0.75)
        _job(new, "task", "biomedvr", 4, seed, 0.85)
    acc = goal_table.load([old, new], goal_table.parse_renames([f"{old}:biomedvr=biomedvr-run1"]))
    assert acc[("task", "biomedvr", 4)] == [85.0, 85.0] and acc[("task", "biomedvr-run1", 4)] == [75.0, 75.0]
    goal_table.goals(acc, ["task"], [4], "biomedvr")
    assert "| 4 | +15.0 | +5.0 | +5.0 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="FOLDER:METHOD=NEW"):
        goal_table.parse_renames(["no-equals-sign"])


def test_goal_table_pools_tasks_of_several_folders_into_counts_and_an_interval(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    goal_table = _load("goal_table")
    one, two = tmp_path / "set1", tmp_path / "set2"
    # default minus probe: -3 (task a), +1 (task b), +2 (task c); task a is also 1.5 below zero-shot
    for folder, task, zs, probe, ours in ((one, "a", 0.80, 0.815, 0.785), (one, "b", 0.50, 0.60, 0.61),
                                          (two, "c", 0.40, 0.70, 0.72)):
        _job(folder, task, "zs-attributes", 0, 0, zs)
        for seed in range(2):
            _job(folder, task, "linear-probe", 4, seed, probe)
            _job(folder, task, "biomedvr", 4, seed, ours)
    record = {"dataset": "c", "method": "ar", "shots": 4, "seed": 0, "metrics": {"accuracy": 0.5}, "start_accuracy": 0.25}
    (two / "jobs" / "c__ar__k4__s0.json").write_text(json.dumps(record))
    acc = goal_table.load([one, two], {})
    assert acc[("c", "ar", 4)] == [50.0] and acc[("c", "ar (untrained start)", 4)] == [25.0]
    goal_table.goals(acc, ["a", "b", "c"], [4], "biomedvr")
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| 4 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["-1.5", "+0.0", "-3.0", "1 of 3"]
    assert cells[5] == "1 of 3"
    low, high = (float(v) for v in cells[6].split(" to "))
    # mean 0, sample sd sqrt(7), t(0.975, 2) = 4.303: half-width 6.57
    assert low == pytest.approx(-6.6, abs=0.05) and high == pytest.approx(6.6, abs=0.05)


def test_trust_study_summarize_pools_goal_checks_over_tasks(tmp_path: Path) -> None:
    import json

    def row(task: str, coverage: float, method: str = "cv+") -> dict:
        return {"task": task, "seed": 0, "classes": 5, "accuracy": 0.7, "coverage": coverage, "size_ratio": 0.3,
                "outlier_auroc": 0.99, "inliers_flagged": 0.02, "other_task_auroc": 0.8,
                "calibration": {"conformal": {"method": method}}}

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps([row("x", 0.80), row("x", 0.90, "split")]))  # task x: 0.85, outside the band
    second.write_text(json.dumps([row("y", 0.91)]))
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "trust_study.py"), "--summarize", str(first),
                          str(second)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "tasks: 2, fits: 3 (1 split conformal, 0 with the VR caveat)" in out.stdout
    assert "coverage within 0.87 to 0.95: 1 of 2 tasks; mean over fits 0.870, one fit 0.800 to 0.910" in out.stdout
    refused = subprocess.run([sys.executable, str(ROOT / "experiments" / "trust_study.py")], capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "--tasks and --workdir are required" in refused.stderr


def test_trust_study_per_task_streams_give_each_task_its_own_images() -> None:
    study = _load("trust_study")
    assert [study.data_seed("urine-sediment", s, "shared") for s in (0, 1, 2)] == [0, 1, 2]
    mine = [study.data_seed("urine-sediment", s, "per-task") for s in (0, 1, 2)]
    other = [study.data_seed("tear-film", s, "per-task") for s in (0, 1, 2)]
    assert len(set(mine + other)) == 6 and min(mine + other) >= 1000  # never the shared streams 0, 1, 2
    assert mine == [study.data_seed("urine-sediment", s, "per-task") for s in (0, 1, 2)]  # stable between runs


def test_coverage_chance_matches_the_beta_law_of_split_conformal() -> None:
    import math

    import numpy as np

    chance = _load("coverage_chance")
    rng = np.random.default_rng(0)
    # One fit, n = 60, a very large test set: the mean is r / (n + 1) and the spread the Beta law's.
    means = chance.simulate([(60, 1000)], level=0.9, test_per_class=1000, draws=40_000, rng=rng)
    rank = math.ceil(0.9 * 61)
    expected_sd = math.sqrt(rank * (61 - rank) / (61 ** 2 * 62))
    assert means.mean() == pytest.approx(rank / 61, abs=0.002)
    assert means.std() == pytest.approx(expected_sd, rel=0.05)
    # More calibration images, less chance of leaving the band 0.87 to 0.95.
    small = chance.simulate([(48, 4)] * 3, level=0.9, test_per_class=40, draws=40_000, rng=rng)
    large = chance.simulate([(960, 4)] * 3, level=0.9, test_per_class=400, draws=40_000, rng=rng)
    outside = [float(((m < 0.87) | (m > 0.95)).mean()) for m in (small, large)]
    assert outside[0] > 0.08 and outside[1] < 0.001


def test_goal_chance_pairs_seeds_and_simulates_only_the_scatter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    goal_chance = _load("goal_chance")
    run = tmp_path / "run"
    _job(run, "a", "zs-attributes", 0, 0, 0.70)
    for seed, (probe, ours) in enumerate(((0.80, 0.78), (0.70, 0.74), (0.75, 0.75))):
        _job(run, "a", "linear-probe", 4, seed, probe)
        _job(run, "a", "biomedvr", 4, seed, ours)
    acc = goal_chance.load_by_seed([run], {})
    against_probe = goal_chance.paired_differences(acc, "biomedvr", "linear-probe", 4)
    assert np.allclose(against_probe["a"], [-2.0, 4.0, 0.0])  # paired by seed
    against_zs = goal_chance.paired_differences(acc, "biomedvr", "zs-attributes", 4)
    assert np.allclose(against_zs["a"], [8.0, 4.0, 5.0])  # zero-shot's one run against every seed
    pool = goal_chance.residual_pool(against_probe)
    # centred on the task's mean (+2/3), then scaled by sqrt(3/2) so the spread is the sample one
    assert np.allclose(pool, (np.array([-2.0, 4.0, 0.0]) - 2 / 3) * np.sqrt(1.5))
    rng = np.random.default_rng(0)
    quiet = np.zeros(10)
    assert goal_chance.simulate(quiet, 5, 3, -1.9, 2.0, draws=100, rng=rng) == (0.0, 1.0)
    assert goal_chance.simulate(quiet, 5, 3, -2.1, 2.0, draws=100, rng=rng) == (5.0, 0.0)
    # one seed, noise +-1 with equal odds, limit 0.5 at margin 0: each task past half the time
    past, none = goal_chance.simulate(np.array([-1.0, 1.0]), 2, 1, 0.0, 0.5, draws=20000, rng=rng)
    assert past == pytest.approx(1.0, abs=0.05) and none == pytest.approx(0.25, abs=0.02)
    assert goal_chance.margin_for(quiet, 5, 3, 2.0, target=0.5, draws=10, rng=rng) == -2.0  # -2 is not past -2
    # with the +-1 noise, none past in 0.9 of draws needs the -1 seed above -0.5: margin 0.5 (exactly)
    assert goal_chance.margin_for(np.array([-1.0, 1.0]), 1, 1, 0.5, target=0.9, draws=2000, rng=rng) == 0.5


def test_head_repeat_study_with_one_partition_is_the_default_check() -> None:
    import math

    import torch

    from biomedvr_cli.method import feature_head as fh

    study = _load("head_repeat_study")
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 3
    features = torch.nn.functional.normalize(torch.randn(24, 8, generator=gen), dim=1)
    offsets = torch.randn(24, 3, generator=gen) + 2.0 * torch.nn.functional.one_hot(labels, 3)
    correct, nll, recal = study.averaged_scores(offsets, features, labels, 3, 1e-3, seed=4, folds=4, repeats=1, steps=30)
    fold_of = fh.stratified_folds(labels, 4, 4)
    want_correct, want_nll = fh._cross_validate(offsets, features, labels, 3, 1e-3, fold_of, 4, 30)
    assert torch.equal(correct.bool(), want_correct) and torch.allclose(nll.float(), want_nll)
    assert recal is not None
    start_correct, _, none = study.averaged_scores(offsets, features, labels, 3, math.inf, seed=4, folds=4, repeats=2,
                                                   steps=30)
    assert none is None and set(start_correct.tolist()) <= {0.0, 1.0}  # the start does not depend on the folds
    # On right/wrong per image the paired check is McNemar's, as fit_feature_head's.
    for z in (0.0, 0.5, 1.5):
        assert study.clearly_better(correct, start_correct, z) == fh.clearly_better(want_correct, start_correct.bool(), z)


def test_head_augment_study_without_views_is_the_default_and_keeps_views_in_their_fold() -> None:
    import torch

    from biomedvr_cli.method import feature_head as fh
    from biomedvr_cli.method.config import MethodConfig

    study = _load("head_augment_study")
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(30) % 3
    features = torch.nn.functional.normalize(torch.randn(30, 8, generator=gen) + torch.nn.functional.one_hot(
        labels, 8).float(), dim=1)
    offsets = torch.randn(30, 3, generator=gen)
    config = MethodConfig(head_penalties=(1e-2, 1e-4), head_lbfgs_steps=30)  # quick; the rule is the same
    plain = study.Labelled(offsets, features, labels, torch.zeros(30, 0, 3), torch.zeros(30, 0, 8))
    assert study.choose_penalty(plain, 3, seed=2, config=config) == fh.fit_feature_head(
        offsets, features, labels, 3, seed=2, config=config).penalty
    # Views of an image train with it and never with another fold: a held-out image's views are left out.
    views = study.Labelled(offsets, features, labels, offsets[:, None].repeat(1, 2, 1) + 100.0,
                           features[:, None].repeat(1, 2, 1))
    keep = torch.zeros(30, dtype=torch.bool)
    keep[:4] = True
    z, x, y = views.training(keep)
    assert z.shape == (12, 3) and torch.equal(y, torch.cat([labels[:4], labels[:4].repeat_interleave(2)]))
    assert bool((z[4:] >= 90).all()) and torch.equal(x[4:6], features[[0, 0]])

"""Prediction sets and the outlier flag under a hostile review (2026-12-07): every defect it reproduced, fixed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.method import conformal, outliers
from tests.conftest import edited_adapter

runner = CliRunner()


def test_info_s_advised_level_builds_the_sets_of_the_assured_level() -> None:
    from biomedvr_cli.method.conformal import level_text as _same_rank_text

    def rank(level: float, n: int) -> int:
        return math.ceil(level * (n + 1) - 1e-9)

    for n in (22, 40, 60, 72, 120, 999, 5000):
        assured = conformal.assured_level(n, 0.9, 0.9)
        shown = float(_same_rank_text(assured, n))
        assert rank(shown, n) == rank(assured, n) and shown <= assured and conformal.level_supported(n, shown)
    # Rounding up (as before) took the next score at 40 images, and every class at 22.
    assert rank(math.ceil(conformal.assured_level(40, 0.9, 0.9) * 1000) / 1000, 40) == 40
    assert not conformal.level_supported(22, math.ceil(conformal.assured_level(22, 0.9, 0.9) * 1000) / 1000)


def test_one_shot_outlier_scores_are_on_the_final_fit_s_scale() -> None:
    from biomedvr_cli.method.trust import outlier_folds

    labels = torch.arange(5).repeat(2)  # two labelled images a class: 1 shot and its validation image
    assert sorted(outlier_folds(labels, 5, seed=0).tolist()) == list(range(10))  # each image alone
    assert outlier_folds(torch.arange(5).repeat(3), 5, seed=0).unique().numel() == 3
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 64, generator=gen)

    def draw(lab: torch.Tensor) -> torch.Tensor:
        return centres[lab] + 0.3 * torch.randn(lab.numel(), 64, generator=gen)

    features = draw(labels)
    means, precision = outliers.fit_gaussian(features, labels, 5)
    fresh = outliers.mahalanobis_scores(draw(torch.arange(5).repeat(40)), means, precision).median()
    loo = outliers.cross_fitted_scores(features, labels, 5, outlier_folds(labels, 5, seed=0)).median()
    halves = outliers.cross_fitted_scores(features, labels, 5, labels.new_tensor([0] * 5 + [1] * 5)).median()
    assert float(halves / fresh) > 50  # the fault: two folds leave no spread, scores over a bare ridge
    assert 0.2 < float(loo / fresh) < 5


def test_predict_sets_from_python_warns_when_the_sets_are_full(tiny_colour_adapter) -> None:
    import biomedvr

    root, adapter, spec = tiny_colour_adapter
    predictor = biomedvr.load(adapter, backbone=spec)
    images = sorted((root / "test").rglob("*.png"))[:2]
    with pytest.warns(biomedvr.BiomedVRWarning, match="every set holds every class"):
        full = predictor.predict_sets(images, level=0.999)
    assert all(len(s) == len(predictor.classes) for s in full)
    with pytest.warns(biomedvr.BiomedVRWarning, match="assurance"):
        predictor.predict_sets(images, level=0.9, assurance=0.999)


def test_eval_reports_no_sets_level_when_no_level_assures_the_coverage(tiny_colour_adapter) -> None:
    root, adapter, spec = tiny_colour_adapter
    result = runner.invoke(app, ["eval", str(root), "--adapter", str(adapter), "--backbone", spec, "--coverage", "0.9",
                                 "--assurance", "0.999", "--json"])
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["sets_level"] is None and metrics["coverage_assurance"] == 0.999
    assert metrics["mean_set_size"] == 3.0


@pytest.mark.parametrize("damage, words", [
    (lambda t, c: (t.__setitem__("outlier_scores", torch.zeros(0)), c["calibration"]["outliers"].pop("images")),
     "lacks its images count"),
    (lambda t, c: t.__setitem__("conformal_scores", t["conformal_scores"] - 2.0), "conformal_scores are not all from 0 to 1"),
    (lambda t, c: t.__setitem__("outlier_scores", -t["outlier_scores"]), "outlier_scores are not all 0 or more"),
    (lambda t, c: c["calibration"]["outliers"].__setitem__("threshold", 12345.0), "outlier threshold 12345.0"),
    (lambda t, c: c["calibration"]["conformal"].__setitem__("max_level", 0.1), "max_level is 0.1"),
    (lambda t, c: c["calibration"]["conformal"].__setitem__("folds", 9), "records 9 fold models"),
])
def test_calibration_no_fit_writes_is_refused_on_load(tiny_colour_adapter, tmp_path: Path, damage, words: str) -> None:
    root, adapter, spec = tiny_colour_adapter
    edited = edited_adapter(adapter, tmp_path / "edited.safetensors", damage)
    result = runner.invoke(app, ["predict", str(next((root / "test").rglob("*.png"))), "--adapter", str(edited),
                                 "--backbone", spec, "--coverage", "0.5"])
    assert result.exit_code == 4 and words in result.stderr and "refit" in result.stderr, result.stderr
    assert "unexpected" not in result.stderr


def test_eval_outliers_that_are_evaluated_images_are_named_and_unreadable_ones_fail_first(
        tiny_colour_adapter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, adapter, spec = tiny_colour_adapter
    base = ["eval", str(root), "--adapter", str(adapter), "--backbone", spec, "--json"]
    same = runner.invoke(app, [*base, "--outliers", str(root / "test")])
    assert same.exit_code == 0, same.stderr
    report = json.loads(same.stdout)
    assert any("--outliers images are also evaluated images" in w for w in report["warnings"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("not an image")
    import biomedvr_cli.pipeline.evaluate as evaluate_module

    scored = []
    real = evaluate_module.compute_metrics
    monkeypatch.setattr(evaluate_module, "compute_metrics", lambda *a, **k: scored.append(1) or real(*a, **k))
    bad = runner.invoke(app, [*base, "--outliers", str(tmp_path / "bad")])
    assert bad.exit_code == 3 and "no readable images in --outliers" in bad.stderr and not scored

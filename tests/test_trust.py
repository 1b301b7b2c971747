"""Prediction sets and the outlier flag: the conformal math, and fit -> predict/eval through the CLI."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from biomedvr_cli.cli.app import app
from biomedvr_cli.method import conformal, outliers
from biomedvr_cli.pipeline.notices import BiomedVRWarning
from tests.conftest import make_color_tree, write_color_attributes

# ---------------------------------------------------------------- the math on synthetic scores


def _calibrated_draw(generator: torch.Generator, n: int, classes: int = 5, sharpness: float = 2.5):
    """Probabilities of a model that is right about its own uncertainty, and labels drawn from them."""
    logits = sharpness * torch.randn(n, classes, generator=generator)
    probs = torch.softmax(logits, dim=1)
    labels = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return probs, labels


def test_split_conformal_covers_at_least_the_level_over_many_draws() -> None:
    generator = torch.Generator().manual_seed(0)
    level, n, m, draws = 0.9, 30, 40, 400
    covered, sizes = [], []
    for _ in range(draws):
        probs, labels = _calibrated_draw(generator, n + m)
        scores = conformal.lac_scores(probs[:n], labels[:n])
        members = conformal.prediction_sets(probs[n:, None, :], scores, torch.zeros(n, dtype=torch.long), level)
        covered.append(members[torch.arange(m), labels[n:]].double().mean())
        sizes.append(members.sum(1).double().mean())
    coverage = float(torch.stack(covered).mean())
    spread = float(torch.stack(covered).std()) / math.sqrt(draws)
    # Split conformal: level <= E[coverage] <= level + 1/(n+1) (continuous scores); 3 standard errors of slack.
    assert level - 3 * spread <= coverage <= level + 1 / (n + 1) + 3 * spread
    assert 1.0 <= float(torch.stack(sizes).mean()) < 5  # informative: smaller than all classes


def test_assured_level_makes_one_draw_s_coverage_reach_the_level_with_the_assurance() -> None:
    # Exact for split conformal: the coverage of one calibration draw follows Beta(r, n + 1 - r).
    from scipy.stats import beta

    level, assurance, n = 0.9, 0.9, 60
    assured = conformal.assured_level(n, level, assurance)
    rank = round(assured * (n + 1))
    assert beta.cdf(level, rank, n + 1 - rank) <= 1 - assurance < beta.cdf(level, rank - 1, n + 2 - rank)
    assert assured > level and conformal.level_supported(n, assured)
    assert conformal.assured_level(n, level, 0.5) == pytest.approx(55 / 61)  # the median draw: about the plain rank
    assert conformal.assured_level(10, level, assurance) is None  # too few images to be that sure
    # Over many draws, sets at the assured level reach the level in at least ``assurance`` of them.
    generator = torch.Generator().manual_seed(1)
    small, m, draws = 30, 400, 300
    assured = conformal.assured_level(small, level, assurance)
    reached = []
    for _ in range(draws):
        probs, labels = _calibrated_draw(generator, small + m)
        scores = conformal.lac_scores(probs[:small], labels[:small])
        members = conformal.prediction_sets(probs[small:, None, :], scores, torch.zeros(small, dtype=torch.long), assured)
        reached.append(float(members[torch.arange(m), labels[small:]].double().mean()) >= level)
    share = sum(reached) / draws
    # 400 test images add their own noise around each draw's coverage; 3 standard errors of slack.
    assert share >= assurance - 3 * math.sqrt(assurance * (1 - assurance) / draws) - 0.05


def test_cv_plus_covers_the_level_with_fold_models() -> None:
    """K fold models that differ a little (as out-of-fold heads do): coverage stays near the level."""
    generator = torch.Generator().manual_seed(1)
    level, n, m, folds, draws = 0.9, 40, 40, 4, 300
    covered = []
    for _ in range(draws):
        logits = 2.5 * torch.randn(n + m, 5, generator=generator)
        labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1)
        per_fold = torch.softmax(logits[:, None, :] + 0.3 * torch.randn(n + m, folds, 5, generator=generator), dim=2)
        fold_of = torch.arange(n) % folds
        scores = conformal.lac_scores(per_fold[torch.arange(n), fold_of], labels[:n])
        members = conformal.prediction_sets(per_fold[n:], scores, fold_of, level)
        covered.append(members[torch.arange(m), labels[n:]].double().mean())
    coverage = float(torch.stack(covered).mean())
    spread = float(torch.stack(covered).std()) / math.sqrt(draws)
    assert coverage >= level - 3 * spread
    assert coverage <= level + 0.05  # close to the level in practice, not the worst case 1 - 2 alpha


def test_split_sets_are_the_usual_quantile_rule() -> None:
    scores = torch.tensor([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])  # n = 10
    level = 0.8  # ceil(0.8 * 11) = 9: q is the 9th smallest score, 0.8
    probs = torch.tensor([[0.25, 0.19, 0.56]])  # scores 0.75, 0.81, 0.44
    members = conformal.prediction_sets(probs[:, None, :], scores, torch.zeros(10, dtype=torch.long), level)
    assert members.tolist() == [[True, False, True]]


def test_too_few_calibration_images_give_the_full_set() -> None:
    assert conformal.images_needed(0.9) == 9 and conformal.images_needed(0.5) == 1
    assert conformal.level_supported(9, 0.9) and not conformal.level_supported(8, 0.9)
    assert not conformal.level_supported(0, 0.5)
    scores = torch.full((5,), 0.01)
    probs = torch.tensor([[0.98, 0.01, 0.01]])[:, None, :]
    members = conformal.prediction_sets(probs, scores, torch.zeros(5, dtype=torch.long), 0.9)
    assert members.all()


def test_empty_sets_get_the_top_class_and_bad_levels_are_refused() -> None:
    scores = torch.zeros(20)  # every calibration image was certain: new scores above 0 leave a set empty
    probs = torch.tensor([[0.6, 0.3, 0.1]])[:, None, :]
    folds = torch.zeros(20, dtype=torch.long)
    assert not conformal.prediction_sets(probs, scores, folds, 0.5).any()
    assert conformal.prediction_sets(probs, scores, folds, 0.5, top=torch.tensor([0])).tolist() == [[True, False, False]]
    for bad in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(ValueError):
            conformal.check_level(bad)


def test_set_metrics_overall_and_per_class() -> None:
    members = torch.tensor([[True, False], [True, True], [False, True], [True, False]])
    report = conformal.set_metrics(members, [0, 1, 0, 0], ["a", "b"])
    assert report["coverage"] == pytest.approx(0.75) and report["mean_set_size"] == pytest.approx(1.25)
    assert report["per_class"][0] == {"class": "a", "coverage": pytest.approx(2 / 3), "mean_set_size": 1.0}
    assert report["per_class"][1] == {"class": "b", "coverage": 1.0, "mean_set_size": 2.0}


def test_fold_probabilities_match_a_head_by_hand() -> None:
    generator = torch.Generator().manual_seed(2)
    sentences, features = torch.randn(3, 4, generator=generator), torch.randn(3, 8, generator=generator)
    weight, bias, scale = torch.randn(2, 4, 8, generator=generator), torch.randn(2, 4, generator=generator), torch.tensor([0.5, 2.0])
    probs = conformal.fold_probabilities(sentences, features, weight, bias, scale)
    by_hand = torch.softmax(scale[1] * sentences + features @ weight[1].t() + bias[1], dim=1)
    assert torch.allclose(probs[:, 1], by_hand, atol=1e-6)


def test_mahalanobis_scores_match_the_formula_and_skip_classes_without_images() -> None:
    generator = torch.Generator().manual_seed(3)
    features = torch.nn.functional.normalize(torch.randn(12, 6, generator=generator), dim=1)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    means, precision = outliers.fit_gaussian(features, labels, 4)  # class 3 has no images
    assert torch.isnan(means[3]).all() and torch.isfinite(means[:3]).all()
    assert torch.allclose(precision, precision.t(), atol=1e-3) and bool(torch.linalg.eigvalsh(precision.double()).min() > 0)
    new = torch.randn(5, 6, generator=generator)
    unit = torch.nn.functional.normalize(new, dim=1)
    diffs = unit[:, None, :] - means[None, :3]
    by_hand = torch.einsum("ncd,de,nce->nc", diffs, precision, diffs).min(1).values
    assert torch.allclose(outliers.mahalanobis_scores(new, means, precision), by_hand, rtol=1e-4, atol=1e-3)


def test_mahalanobis_flags_what_lies_off_the_task_s_directions_where_cosine_cannot() -> None:
    """Images vary along one direction within each class; an image the same cosine away, but along an unseen direction, stands out."""
    generator = torch.Generator().manual_seed(5)
    basis = torch.eye(8)
    labels = torch.arange(40) % 2
    spread = 0.3 * torch.randn(40, 1, generator=generator) * basis[2] + 0.01 * torch.randn(40, 8, generator=generator)
    features = basis[labels] + spread
    means, precision = outliers.fit_gaussian(features, labels, 2)
    inlier = basis[0] + 0.3 * basis[2]  # far along the direction the class varies in
    stranger = basis[0] + 0.3 * basis[5]  # as far, along a direction no labelled image varies in
    cosine = outliers.cosine_scores(torch.stack([inlier, stranger]), torch.nn.functional.normalize(means, dim=1))
    assert float(cosine[1]) < 1.2 * float(cosine[0])  # about as far by cosine
    maha = outliers.mahalanobis_scores(torch.stack([inlier, stranger]), means, precision)
    assert float(maha[1]) > 10 * float(maha[0])


def test_cross_fitted_outlier_scores_come_from_fits_without_the_fold() -> None:
    generator = torch.Generator().manual_seed(6)
    features = torch.randn(10, 5, generator=generator)
    labels, fold_of = torch.tensor([0, 1] * 5), torch.tensor([0, 0, 1, 1, 2, 2, 0, 0, 1, 1])
    scores = outliers.cross_fitted_scores(features, labels, 2, fold_of)
    for k in range(3):
        held = fold_of == k
        means, precision = outliers.fit_gaussian(features[~held], labels[~held], 2)
        assert torch.allclose(scores[held], outliers.mahalanobis_scores(features[held], means, precision), rtol=1e-5)
    # One image a class: no spread to estimate, the ridge keeps every score finite.
    lonely_means, lonely_precision = outliers.fit_gaussian(features[:2], labels[:2], 2)
    assert bool(torch.isfinite(lonely_precision).all())
    assert bool(torch.isfinite(outliers.mahalanobis_scores(features, lonely_means, lonely_precision)).all())


def test_outlier_threshold_and_auroc() -> None:
    scores = torch.arange(1, 20, dtype=torch.float64) / 20  # n = 19
    assert outliers.conformal_threshold(scores, 0.05) == pytest.approx(0.95)  # rank ceil(20 * 0.95) = 19
    assert outliers.conformal_threshold(scores, 0.2) == pytest.approx(0.8)  # rank 16
    assert outliers.conformal_threshold(scores[:5], 0.05) == pytest.approx(0.25)  # too few: the largest
    generator = torch.Generator().manual_seed(4)
    inl, out = torch.randn(50, generator=generator).round(decimals=1), (torch.randn(30, generator=generator) + 1).round(decimals=1)
    pairs = [1.0 if o > i else 0.5 if o == i else 0.0 for o in out.tolist() for i in inl.tolist()]  # ties: half
    assert outliers.auroc(inl, out) == pytest.approx(sum(pairs) / len(pairs))
    assert outliers.auroc(torch.zeros(3), torch.ones(2)) == 1.0 and outliers.auroc(torch.ones(3), torch.zeros(2)) == 0.0


# ---------------------------------------------------------------- fit -> predict / eval through the CLI

runner = CliRunner()
CLASSES = ["alpha cell", "beta cell", "gamma cell"]


def test_fold_heads_of_an_averaged_head_are_the_averaged_fold_fits() -> None:
    """With head_combine average, each CV+ fold head is the same weighted sum of penalties, fitted without the fold."""
    from biomedvr_cli.method.feature_head import solve, stratified_folds
    from biomedvr_cli.method.trust import _fold_heads

    generator = torch.Generator().manual_seed(3)
    labels = torch.arange(24) % 3
    sentences, features = torch.randn(24, 3, generator=generator), torch.randn(24, 8, generator=generator)
    mixture = ((math.inf, 0.25), (1e-2, 0.5), (1e-3, 0.25))
    probs, fold_of, weight, bias, scale = _fold_heads(sentences, features, labels, 3, mixture, 4, 0, 50)
    assert torch.equal(fold_of, stratified_folds(labels, 4, 0)) and weight.shape == (4, 3, 8)
    held = fold_of == 1
    parts = [solve(sentences[~held], features[~held], labels[~held], 3, p, steps=50) for p, _ in mixture[1:]]
    by_hand = 0.5 * parts[0][0] + 0.25 * parts[1][0]
    assert torch.allclose(weight[1], by_hand, atol=1e-5)
    assert float(scale[1]) == pytest.approx(0.25 + 0.5 * parts[0][2] + 0.25 * parts[1][2], abs=1e-5)
    expected = torch.softmax(scale[1] * sentences[held] + features[held] @ weight[1].t() + bias[1], dim=1)
    assert torch.allclose(probs[held], expected, atol=1e-5)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = make_color_tree(tmp_path_factory.mktemp("trust-imgs") / "data", per_class=6, splits=("train", "test"))
    write_color_attributes(root / "attributes.json")
    return root


@pytest.fixture(scope="module")
def fitted(tree: Path, tiny_backbone_spec: str, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trust-adapter") / "colour.safetensors"
    result = runner.invoke(app, ["fit", str(tree), "--shots", "3", "--backbone", tiny_backbone_spec, "--out", str(out),
                                 "--epochs", "2"])
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def other_kind(tmp_path_factory) -> Path:
    """Images of another kind: black-and-white checkerboards, in a folder with no class structure."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("other-kind")
    for i in range(5):
        board = (np.indices((40, 40)).sum(0) // (2 + i) % 2 * 255).astype("uint8")
        Image.fromarray(np.stack([board] * 3, axis=2)).save(folder / f"board{i}.png")
    return folder


def _without_calibration(adapter: Path, out: Path) -> Path:
    """The adapter as an older biomedvr wrote it: no calibration tensors, no calibration in the config."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(adapter), framework="pt") as handle:
        metadata = dict(handle.metadata())
        metadata.pop("content_sha256", None)  # edited without the digest: what the checks after it catch
    config = json.loads(metadata["config"])
    config.pop("calibration")
    metadata["config"] = json.dumps(config)
    tensors = {k: v for k, v in load_file(str(adapter)).items() if not k.startswith(("conformal_", "outlier_"))}
    save_file(tensors, str(out), metadata=metadata)
    return out


def test_fit_stores_the_calibration(fitted: Path) -> None:
    from safetensors.torch import load_file

    config = json.loads(runner.invoke(app, ["info", str(fitted), "--json"]).stdout)["config"]
    sets, flag = config["calibration"]["conformal"], config["calibration"]["outliers"]
    assert sets["images"] == 18 and sets["method"] in ("split", "cv+") and sets["score"] == conformal.SCORE
    assert sets["max_level"] == pytest.approx(18 / 19, abs=1e-6)
    assert flag["images"] == 18 and flag["rate"] == outliers.DEFAULT_RATE
    tensors = load_file(str(fitted))
    assert tensors["conformal_scores"].shape == (18,) and tensors["outlier_means"].shape[0] == 3
    assert flag["score"] == outliers.MAHALANOBIS and tensors["outlier_precision"].shape[0] == tensors["outlier_means"].shape[1]
    assert flag["threshold"] == pytest.approx(outliers.conformal_threshold(tensors["outlier_scores"], 0.05), abs=1e-6)
    shown = runner.invoke(app, ["info", str(fitted)], env={"COLUMNS": "400"})
    text = " ".join(shown.stderr.split())  # human output goes to stderr
    assert shown.exit_code == 0 and "prediction sets" in text and "18 labelled images" in text
    assert "--coverage up to 0.947" in text  # 18 / 19, rounded down
    assert "too few labelled images to be 90% sure of 0.9 coverage" in text  # 18 cannot
    assert "outlier flag" in text and "threshold" in text


def test_predict_coverage_json_csv_and_table(fitted: Path, tree: Path, tiny_backbone_spec: str) -> None:
    base = ["predict", str(tree / "test"), "--adapter", str(fitted), "--backbone", tiny_backbone_spec, "--coverage", "0.9"]
    result = runner.invoke(app, [*base, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["predictions"]
    assert len(rows) == 18
    for row in rows:
        assert row["prediction_set"] and set(row["prediction_set"]) <= set(CLASSES)
        probability = {t["class"]: t["probability"] for t in row["top"]}
        assert [probability[c] for c in row["prediction_set"]] == sorted(
            (probability[c] for c in row["prediction_set"]), reverse=True)
        assert isinstance(row["outlier"], bool) and isinstance(row["outlier_score"], float)
    table = list(csv.DictReader(io.StringIO(runner.invoke(app, [*base, "--format", "csv"]).stdout)))
    assert [r["prediction_set"] for r in table] == [";".join(r["prediction_set"]) for r in rows]
    assert [r["outlier"] for r in table] == [str(r["outlier"]).lower() for r in rows]
    shown = runner.invoke(app, base)
    assert shown.exit_code == 0 and "prediction_set" in shown.stderr


@pytest.mark.slow  # `--head-combine average`, an option, not the default: seconds of fitting
def test_an_averaged_head_fits_records_its_weights_and_gives_sets(tree: Path, tiny_backbone_spec: str,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "averaged.safetensors"
    result = runner.invoke(app, ["fit", str(tree), "--shots", "3", "--backbone", tiny_backbone_spec, "--out", str(out),
                                 "--epochs", "1", "--head-combine", "average"])
    assert result.exit_code == 0, result.stderr
    config = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)["config"]
    assert config["method"]["head_combine"] == "average" and config["method"]["head_start_prior"] == 0.5
    predicted = runner.invoke(app, ["predict", str(tree / "test"), "--adapter", str(out), "--backbone",
                                    tiny_backbone_spec, "--coverage", "0.8", "--format", "json"])
    assert predicted.exit_code == 0, predicted.stderr
    rows = json.loads(predicted.stdout)["predictions"]
    assert len(rows) == 18 and all(row["prediction_set"] for row in rows)


def test_predict_sets_from_python_match_the_cli(fitted: Path, tree: Path, tiny_backbone_spec: str) -> None:
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.pipeline.predictor import load_predictor

    files = sorted((tree / "test").rglob("*.png"))[:4]
    predictor = load_predictor(fitted, backbone=tiny_backbone_spec)
    sets = predictor.predict_sets([str(f) for f in files], level=0.9)
    result = runner.invoke(app, ["predict", *map(str, files), "--adapter", str(fitted), "--backbone", tiny_backbone_spec,
                                 "--coverage", "0.9", "--json"])
    assert sets == [r["prediction_set"] for r in json.loads(result.stdout)["predictions"]]
    with pytest.warns(BiomedVRWarning, match="every set holds every class"):
        assert all(sorted(s) == CLASSES for s in predictor.predict_sets([str(f) for f in files], level=0.99))
    with pytest.raises(UsageError):
        predictor.predict_sets([str(files[0])], level=1.0)


def test_assurance_builds_larger_sets_at_the_assured_level(fitted: Path, tree: Path, tiny_backbone_spec: str) -> None:
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.pipeline.predictor import load_predictor

    files = [str(f) for f in sorted((tree / "test").rglob("*.png"))]
    predictor = load_predictor(fitted, backbone=tiny_backbone_spec)
    plain = predictor.predict_sets(files, level=0.6)
    assured = predictor.predict_sets(files, level=0.6, assurance=0.8)  # 18 calibration images can give this
    level = conformal.assured_level(18, 0.6, 0.8)
    assert level is not None and level > 0.6 + 1 / 19  # a higher rank than the plain level's
    assert assured == predictor.predict_sets(files, level=level)
    assert all(set(a) >= set(p) for a, p in zip(assured, plain))  # a higher rank never drops a class
    # 0.9 with assurance 0.9 needs at least 22 images: every class in every set, and the CLI says why.
    with pytest.warns(BiomedVRWarning, match="assurance 0.9 needs more than"):
        assert all(sorted(s) == CLASSES for s in predictor.predict_sets(files[:3], level=0.9, assurance=0.9))
    base = ["--adapter", str(fitted), "--backbone", tiny_backbone_spec, "--coverage", "0.9", "--assurance", "0.9"]
    shown = runner.invoke(app, ["predict", files[0], *base, "--json"])
    assert shown.exit_code == 0, shown.stderr
    assert sorted(json.loads(shown.stdout)["predictions"][0]["prediction_set"]) == CLASSES
    assert "needs more than the 18 labelled images" in " ".join(shown.stderr.split())
    scored = runner.invoke(app, ["eval", str(tree), *base[:-1], "0.8", "--json"])
    assert scored.exit_code == 0, scored.stderr
    metrics = json.loads(scored.stdout)["metrics"]
    assert metrics["coverage_level"] == 0.9 and metrics["coverage_assurance"] == 0.8
    assert metrics["sets_level"] > 0.9 and metrics["mean_set_size"] >= 1
    # The assured level is information: a note on stderr and in the report's notes, not a warning.
    report = json.loads(scored.stdout)
    assert [n for n in report["notes"] if "built at level" in n] and not [w for w in report["warnings"] if "built at level" in w]
    noted = runner.invoke(app, ["predict", files[0], *base[:-1], "0.8"])
    assert noted.exit_code == 0, noted.stderr
    line = next(line for line in noted.stderr.splitlines() if "built at level" in line)
    assert not line.startswith("warning")
    for bad, message in ((["--assurance", "0.9"], "--assurance needs --coverage"),
                         (["--coverage", "0.9", "--assurance", "1"], "between 0 and 1")):
        refused = runner.invoke(app, ["predict", files[0], "--adapter", str(fitted), "--backbone", tiny_backbone_spec, *bad])
        assert refused.exit_code == 2 and message in refused.stderr and "Traceback" not in refused.stderr
    with pytest.raises(UsageError, match="between 0 and 1"):
        predictor.predict_sets(files[:1], level=0.9, assurance=0.0)


def test_a_level_beyond_the_calibration_gives_full_sets_with_a_notice(fitted: Path, tree: Path,
                                                                       tiny_backbone_spec: str) -> None:
    result = runner.invoke(app, ["predict", str(tree / "test" / "alpha cell"), "--adapter", str(fitted), "--backbone",
                                 tiny_backbone_spec, "--coverage", "0.99", "--json"])
    assert result.exit_code == 0, result.stderr
    assert all(len(r["prediction_set"]) == 3 for r in json.loads(result.stdout)["predictions"])
    assert "needs at least 99 calibration images" in result.stderr and "has 18" in result.stderr


def test_eval_reports_coverage_set_size_and_outlier_auroc(fitted: Path, tree: Path, tiny_backbone_spec: str,
                                                          other_kind: Path) -> None:
    from biomedvr_cli.pipeline.predictor import load_predictor
    from biomedvr_cli.pipeline.trust import assess_outliers

    base = ["eval", str(tree), "--adapter", str(fitted), "--backbone", tiny_backbone_spec, "--coverage", "0.9",
            "--outliers", str(other_kind)]
    result = runner.invoke(app, [*base, "--json"])
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["coverage_level"] == 0.9 and 0 <= metrics["coverage"] <= 1 and 1 <= metrics["mean_set_size"] <= 3
    per_class = metrics["per_class"]
    assert sum(r["coverage"] * r["support"] for r in per_class) / 18 == pytest.approx(metrics["coverage"])
    assert metrics["outlier_images"] == 5 and 0 <= metrics["outlier_auroc"] <= 1
    predictor = load_predictor(fitted, backbone=tiny_backbone_spec)
    inside = predictor.assess(torch.stack([_pixels(p, predictor.image_size) for p in sorted((tree / "test").rglob("*.png"))]))
    others = assess_outliers(predictor, sorted(other_kind.glob("*.png")))
    assert metrics["outlier_auroc"] == pytest.approx(outliers.auroc(inside.outlier_scores, others.outlier_scores))
    assert metrics["outliers_flagged"] == pytest.approx(float(others.outliers.double().mean()))
    table = runner.invoke(app, base)
    assert table.exit_code == 0 and "outlier_auroc" in table.stderr and "mean_set_size" in table.stderr


def _pixels(path: Path, size: int) -> torch.Tensor:
    from biomedvr_cli.data import decode_to_tensors

    return decode_to_tensors([path], size).images[0]


def test_old_adapters_load_and_say_to_refit_for_sets(fitted: Path, tree: Path, tiny_backbone_spec: str, tmp_path: Path,
                                                     other_kind: Path) -> None:
    old = _without_calibration(fitted, tmp_path / "old.safetensors")
    image = str(next((tree / "test" / "beta cell").glob("*.png")))
    plain = runner.invoke(app, ["predict", image, "--adapter", str(old), "--backbone", tiny_backbone_spec, "--json"])
    assert plain.exit_code == 0, plain.stderr
    row = json.loads(plain.stdout)["predictions"][0]
    assert "outlier" not in row and "prediction_set" not in row
    sets = runner.invoke(app, ["predict", image, "--adapter", str(old), "--backbone", tiny_backbone_spec, "--coverage", "0.9"])
    assert sets.exit_code == 4 and "no calibration for prediction sets" in sets.stderr and "refit" in sets.stderr
    assert "Traceback" not in sets.stderr
    flags = runner.invoke(app, ["eval", str(tree), "--adapter", str(old), "--backbone", tiny_backbone_spec,
                                "--outliers", str(other_kind)])
    assert flags.exit_code == 4 and "no outlier calibration" in flags.stderr
    shown = runner.invoke(app, ["info", str(old)], env={"COLUMNS": "400"})
    assert shown.exit_code == 0 and "refit the adapter" in " ".join(shown.stderr.split())


def _with_cosine_outliers(adapter: Path, out: Path) -> Path:
    """The adapter as 0.3.0 wrote it: the outlier flag scored by cosine to normalised class means."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(adapter), framework="pt") as handle:
        metadata = dict(handle.metadata())
        metadata.pop("content_sha256", None)  # edited without the digest: what the checks after it catch
    config = json.loads(metadata["config"])
    config["calibration"]["outliers"]["score"] = outliers.COSINE
    tensors = load_file(str(adapter))
    tensors["outlier_prototypes"] = torch.nn.functional.normalize(tensors.pop("outlier_means"), dim=1)
    tensors.pop("outlier_precision")
    tensors["outlier_scores"] = torch.linspace(0.0, 0.3, tensors["outlier_scores"].numel())
    config["calibration"]["outliers"]["threshold"] = round(outliers.conformal_threshold(tensors["outlier_scores"], 0.05), 6)
    metadata["config"] = json.dumps(config)
    save_file(tensors, str(out), metadata=metadata)
    return out


def test_adapters_with_the_cosine_outlier_score_still_flag_with_it(fitted: Path, tree: Path, tiny_backbone_spec: str,
                                                                   tmp_path: Path) -> None:
    from biomedvr_cli.pipeline.predictor import load_predictor

    old = _with_cosine_outliers(fitted, tmp_path / "cosine.safetensors")
    predictor = load_predictor(old, backbone=tiny_backbone_spec)
    flag = predictor.calibration.outliers
    assert flag.precision is None and flag.score_name == outliers.COSINE
    assert flag.threshold == pytest.approx(0.3)
    images = torch.stack([_pixels(p, predictor.image_size) for p in sorted((tree / "test").rglob("*.png"))])
    assessed = predictor.assess(images)
    assert bool(((assessed.outlier_scores >= 0) & (assessed.outlier_scores <= 2)).all())  # 1 - cosine
    assert torch.equal(assessed.outliers, assessed.outlier_scores > 0.3)


@pytest.mark.parametrize("command", ["predict", "eval"])
@pytest.mark.parametrize("level", ["1.5", "0", "1"])
def test_coverage_outside_zero_one_is_a_usage_error(fitted: Path, tree: Path, tiny_backbone_spec: str, command: str,
                                                    level: str) -> None:
    target = str(tree / "test") if command == "predict" else str(tree)
    result = runner.invoke(app, [command, target, "--adapter", str(fitted), "--backbone", tiny_backbone_spec,
                                 "--coverage", level])
    assert result.exit_code == 2 and "coverage level must be a number between 0 and 1" in result.stderr


def test_without_a_fitted_feature_head_the_calibration_is_split_conformal(fitted: Path, tree: Path,
                                                                          tiny_backbone_spec: str) -> None:
    """The sentence scorer saw none of the labelled images: its own scores are the calibration."""
    from biomedvr_cli.method.training import LabelledImages, TrainResult, head_outputs
    from biomedvr_cli.method.trust import ALL_IMAGES, FITTED_VIEWS_CAVEAT, calibrate
    from biomedvr_cli.pipeline.predictor import load_predictor

    predictor = load_predictor(fitted, backbone=tiny_backbone_spec)
    files = sorted((tree / "train").rglob("*.png"))
    labelled = LabelledImages(torch.stack([_pixels(p, predictor.image_size) for p in files]),
                              torch.tensor([CLASSES.index(p.parent.name) for p in files]))
    result = TrainResult(state={}, selected_epoch=0, selection_rule="", val_accuracy=None, val_nll=None, seconds=0.0)
    calibration = calibrate(predictor.head, predictor.backbone.encode_images, labelled, result, seed=0)
    part = calibration.conformal
    assert part.method == "split" and part.images == 18 and not part.caveat
    assert calibration.record()["conformal"]["calibrated_on"] == ALL_IMAGES
    fused = head_outputs(predictor.head, predictor.backbone.encode_images, labelled.images)[0]
    assert torch.allclose(part.scores, conformal.lac_scores(torch.softmax(fused, 1), labelled.labels), atol=1e-6)
    trained = TrainResult(state={}, selected_epoch=3, selection_rule="", val_accuracy=None, val_nll=None, seconds=0.0)
    assert calibrate(predictor.head, predictor.backbone.encode_images, labelled, trained, seed=0).conformal.caveat \
        == FITTED_VIEWS_CAVEAT

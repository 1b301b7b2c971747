"""Prediction sets and the outlier flag: the conformal math, and fit -> predict/eval through the CLI."""

from __future__ import annotations

import math

import pytest
import torch

from biomedvr_cli.method import conformal, outliers

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


def test_leave_one_out_outlier_scores_match_brute_force() -> None:
    generator = torch.Generator().manual_seed(3)
    features = torch.nn.functional.normalize(torch.randn(9, 6, generator=generator), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2])
    loo = outliers.leave_one_out_scores(features, labels, 4)  # class 3 has no images
    for i in range(9):
        keep = torch.arange(9) != i
        brute = outliers.outlier_scores(features[i : i + 1], outliers.class_prototypes(features[keep], labels[keep], 4))
        present = torch.bincount(labels[keep], minlength=4) > 0
        cos = 1 - torch.nn.functional.normalize(features[i : i + 1], dim=1) @ outliers.class_prototypes(
            features[keep], labels[keep], 4)[present].t()
        assert loo[i] == pytest.approx(float(cos.min()), abs=1e-5)
        assert float(brute) <= float(loo[i]) + 1e-5  # a zero prototype row scores cosine 0, never above the best
    lonely = outliers.leave_one_out_scores(features[:4], torch.tensor([0, 0, 0, 1]), 2)
    expected = 1 - float(features[3] @ torch.nn.functional.normalize(features[:3].sum(0), dim=0))
    assert float(lonely[3]) == pytest.approx(expected, abs=1e-5)  # its class has no other image


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

"""Gaussian heads as feature-head candidates (head_family "logistic+gaussian")."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from biomedvr_cli.method import gaussian_head as gaussian
from biomedvr_cli.method.config import MethodConfig, unused_settings
from biomedvr_cli.method.feature_head import fit_feature_head, solve_candidate, solve_mixture
from biomedvr_cli.method.gaussian_head import GaussianHead

GAUSSIAN = MethodConfig(head_family="logistic+gaussian")
LOGISTIC = MethodConfig(head_family="logistic")  # the default before 2026-12-08
# Two logistic penalties, a strong and a weak one, keep the choice tests quick.
QUICK = dict(head_penalties=(1e-2, 1e-4))


def _anisotropic(n_per_class: int, classes: int = 3, dim: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features whose classes differ along one quiet direction while four loud ones vary within every class."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    x = 0.01 * torch.randn(labels.numel(), dim, generator=generator)
    x[:, :4] += 0.3 * torch.randn(labels.numel(), 4, generator=generator)  # loud, no class information
    x[:, 4] += 0.05 * labels.float()  # quiet, all of it
    x[:, 5] += 1.0
    return x, labels


def test_the_discriminant_decides_as_scikit_learn_s_shrunk_lda() -> None:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    features, labels = _anisotropic(10, dim=8)
    test, _ = _anisotropic(40, dim=8, seed=1)
    features, test = F.normalize(features, dim=1), F.normalize(test, dim=1)
    for shrinkage in (0.2, 0.5, 0.8):
        weight, bias = gaussian.class_discriminant(features, labels, 3, shrinkage)
        ours = (test @ weight.t() + bias).argmax(1)
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage).fit(features.double().numpy(),
                                                                                  labels.numpy())
        # scikit-learn's pooled covariance is ours times (N - C) / N, the same after the identity target is
        # scaled alike: only the logits' scale differs, so with equal priors every decision is the same.
        assert torch.equal(ours, torch.from_numpy(lda.predict(test.double().numpy())).long())


def test_no_discriminant_without_spread_or_with_a_class_missing() -> None:
    features = F.normalize(torch.randn(3, 6), dim=1)
    assert gaussian.class_discriminant(features, torch.tensor([0, 1, 2]), 3, 0.5) is None  # one image a class
    assert gaussian.class_discriminant(features, torch.tensor([0, 0, 1]), 3, 0.5) is None  # class 2 has none
    weight, bias, scale = gaussian.solve_gaussian(features, torch.tensor([0, 1, 2]), 3, GaussianHead(0.5, 1.0, 0.5))
    assert not weight.any() and not bias.any() and scale == 1.0  # the sentence scores alone


def test_a_gaussian_candidate_is_one_linear_head() -> None:
    features, labels = _anisotropic(6)
    offsets = torch.randn(labels.numel(), 3)
    head = GaussianHead(0.5, 0.3, 0.5)
    weight, bias, scale = solve_candidate(offsets, features, labels, 3, head, steps=10)
    w, b = gaussian.class_discriminant(features, labels, 3, 0.5)
    stored = scale * offsets + features @ weight.t() + bias
    direct = 0.5 * offsets + 0.3 * (features @ w.t() + b)
    # stored centred over the classes: the same probabilities, smaller numbers
    assert torch.allclose(torch.softmax(stored, 1), torch.softmax(direct, 1), atol=1e-5)
    assert torch.allclose(weight.mean(0), torch.zeros(weight.shape[1]), atol=1e-5) and abs(float(bias.mean())) < 1e-5
    mixed = solve_mixture(offsets, features, labels, 3, ((head, 1.0),), steps=10)
    assert torch.equal(mixed[0], weight) and mixed[2] == scale


def test_the_candidates_are_the_config_s_grid_in_order() -> None:
    grid = gaussian.candidates(GAUSSIAN.head_gaussian_shrinkage, GAUSSIAN.head_gaussian_scales,
                               GAUSSIAN.head_gaussian_sentence_weights)
    assert len(grid) == 3 * 5 * 3 and grid[0] == GaussianHead(0.2, 0.01, 1.0) and grid[-1] == GaussianHead(0.8, 1.0, 0.0)


def test_the_gaussian_family_finds_a_quiet_direction_the_logistic_penalties_miss() -> None:
    features, labels = _anisotropic(8)
    offsets = torch.zeros(labels.numel(), 3)
    test, test_labels = _anisotropic(100, seed=3)
    logistic = fit_feature_head(offsets, features, labels, 3, seed=0, config=dataclasses.replace(LOGISTIC, **QUICK))
    both = fit_feature_head(offsets, features, labels, 3, seed=0, config=dataclasses.replace(GAUSSIAN, **QUICK))
    assert isinstance(both.penalty, GaussianHead) and both.uses_features and "Gaussian head" in both.describe()
    assert not isinstance(logistic.penalty, GaussianHead)

    def accuracy(fit) -> float:
        return float(((test @ fit.weight.t() + fit.bias).argmax(1) == test_labels).float().mean())

    assert accuracy(both) > accuracy(logistic) + 0.1


def test_on_noise_the_gaussian_family_chooses_what_the_logistic_one_does() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(10)
    offsets = 3.0 * F.one_hot(labels, 4).float() + torch.randn(labels.numel(), 4, generator=generator)
    noise = F.normalize(torch.randn(labels.numel(), 16, generator=generator), dim=1)
    fit = fit_feature_head(offsets, noise, labels, 4, seed=0, config=dataclasses.replace(GAUSSIAN, **QUICK))
    assert fit.penalty == fit_feature_head(offsets, noise, labels, 4, seed=0,
                                           config=dataclasses.replace(LOGISTIC, **QUICK)).penalty


def test_one_image_a_class_never_tries_a_gaussian_head() -> None:
    # With a validation image each, a fold leaves one image a class: no spread, no Gaussian candidate.
    features, labels = _anisotropic(2)
    fit = fit_feature_head(torch.zeros(labels.numel(), 3), features, labels, 3, seed=0, config=GAUSSIAN)
    assert not isinstance(fit.penalty, GaussianHead)


def test_config_grids_are_checked_and_old_adapters_read_as_logistic() -> None:
    for bad in (dict(head_gaussian_scales=[0.0]), dict(head_gaussian_shrinkage=[1.5]),
                dict(head_gaussian_sentence_weights=[-0.1]), dict(head_gaussian_scales="0.1"),
                dict(head_gaussian_scales=[]), dict(head_family="gaussian")):
        with pytest.raises(ValueError):
            MethodConfig(**bad)
    assert MethodConfig.from_dict(GAUSSIAN.to_dict()) == GAUSSIAN
    recorded = {k: v for k, v in LOGISTIC.to_dict().items() if not k.startswith("head_gaussian") and k != "head_family"}
    assert MethodConfig.from_dict(recorded).head_family == "logistic"


def test_gaussian_settings_without_the_family_are_named_as_unused() -> None:
    assert MethodConfig().head_family == "logistic+gaussian"  # the default since 2026-12-08
    given = {"head_gaussian_scales": (0.1,)}
    assert [u[0] for u in unused_settings(dataclasses.replace(LOGISTIC, head_gaussian_scales=(0.1,)), given)] == [
        "head_gaussian_scales"]
    assert unused_settings(dataclasses.replace(GAUSSIAN, head_gaussian_scales=(0.1,)), given) == []
    averaged = MethodConfig(head_family="logistic", head_combine="average")
    unused = unused_settings(averaged, {"head_family": "logistic", "head_combine": "average"})
    assert [(u[0], u[2]) for u in unused] == [("head_family", ("head_combine", "select"))]


def test_held_out_scores_come_from_fits_without_each_fold() -> None:
    from biomedvr_cli.method.feature_head import stratified_folds

    features, labels = _anisotropic(6)
    offsets = torch.randn(labels.numel(), 3)
    fold_of = stratified_folds(labels, 3, seed=0)
    scores = gaussian.held_out_scores(features, labels, 3, 0.5, fold_of, 3)
    head = GaussianHead(0.5, 0.3, 0.5)
    for k in range(3):
        held = fold_of == k
        w, b = gaussian.class_discriminant(features[~held], labels[~held], 3, 0.5)
        expected = 0.5 * offsets[held] + 0.3 * (features[held] @ w.t() + b)
        assert torch.equal(gaussian.held_out_logits(offsets, scores, head)[held], expected)
    one_each = torch.arange(3).repeat(2)
    assert gaussian.held_out_scores(features[:6], one_each, 3, 0.5, torch.arange(6) // 3, 2) is None

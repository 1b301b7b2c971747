"""The method's parts: k-nearest scoring, VR modules, gates, loss, the training loop."""

from __future__ import annotations

import dataclasses

import math

import pytest
import torch
import torch.nn.functional as F

from biomedvr_cli.errors import TrainingError
from biomedvr_cli.method.head import BioMedVRHead, MethodConfig
from biomedvr_cli.method.losses import biomedvr_loss, confusion_suppression
from biomedvr_cli.method.scoring import knn_attribute_logits
from biomedvr_cli.method.textbanks import TextBank
from biomedvr_cli.method.vr import FullVR, MaskVR, PaddingVR, inner_size
from biomedvr_cli.method.recipes import available_recipes, load_recipe
from biomedvr_cli.method import training
from biomedvr_cli.method.training import predict_logits, train_head


def test_knn_matches_reference_and_never_duplicates() -> None:
    torch.manual_seed(0)
    feats = F.normalize(torch.randn(5, 8), dim=1)
    bank = F.normalize(torch.randn(7, 8), dim=1)
    owner = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    out = knn_attribute_logits(feats, bank, owner, 3, k=3, tau=10.0)
    sims = 10 * feats @ bank.t()
    expected = torch.stack([sims[:, :4].topk(3, 1).values.mean(1), sims[:, 4], sims[:, 5:].mean(1)], 1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_padding_vr_changes_only_the_frame() -> None:
    vr = PaddingVR(28)
    assert inner_size(28, None) == 24 and inner_size(224, None) == 192
    with torch.no_grad():
        vr.delta.fill_(3.0)
    x = torch.rand(2, 3, 28, 28)
    y = vr(x)
    assert y.shape == x.shape
    inner = F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(y[:, :, 2:26, 2:26], inner, atol=1e-6)
    assert torch.allclose(y[:, :, 0, :], torch.sigmoid(torch.tensor(3.0)).expand(2, 3, 28), atol=1e-6)


@pytest.mark.parametrize("module", [FullVR(16, eps=0.5), MaskVR(16, eps=0.5)])
def test_additive_vr_is_bounded(module) -> None:
    with torch.no_grad():
        module.delta.fill_(10.0)
    x = torch.rand(3, 3, 16, 16)
    y = module(x)
    assert y.min() >= 0 and y.max() <= 1
    assert (y - x).abs().max() <= 0.5 + 1e-6


def test_confusion_suppression_hinge() -> None:
    fused = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    negative = torch.tensor([[1.8, 0.5], [0.2, 3.0]])
    labels = torch.tensor([0, 1])
    # sample 0: relu(1.8 - 2 + 0.5) = 0.3; sample 1: relu(3 - 1 + 0.5) = 2.5
    assert confusion_suppression(fused, negative, labels, 0.5).item() == pytest.approx(1.4)
    total, parts = biomedvr_loss(fused, negative, labels, beta=0.3, margin=0.5)
    assert total.item() == pytest.approx(parts["ce"] + 0.3 * 1.4, rel=1e-5)
    ce_only, parts = biomedvr_loss(fused, None, labels, beta=0.3, margin=0.5)
    assert "cs" not in parts


def _banks(dim: int = 16) -> dict[str, TextBank]:
    torch.manual_seed(1)
    owners = torch.tensor([0, 0, 1, 1, 2, 2])
    return {name: TextBank(F.normalize(torch.randn(6, dim), dim=1), owners, [f"{name} {i}" for i in range(6)])
            for name in ("descriptive", "distinctive", "confusion")}


def _encoder(dim: int = 16):
    torch.manual_seed(2)
    proj = torch.randn(3 * 16 * 16, dim)
    return lambda x: F.normalize(x.flatten(1) @ proj, dim=1)


# The default run covers every VR form and every gate once (the diagonal); the other pairs, and
# "subtract" (an earlier variant), run in the slow suite, so the default run stays under 3 minutes.
_DIAGONAL = {("padding", "global"), ("full", "class"), ("mask", "sample")}


@pytest.mark.parametrize("vr, gate", [
    pytest.param(vr, gate, marks=() if (vr, gate) in _DIAGONAL else pytest.mark.slow)
    for vr in ("padding", "full", "mask") for gate in ("global", "class", "sample")])
@pytest.mark.parametrize("combine", ["add", pytest.param("subtract", marks=pytest.mark.slow)])
def test_every_variant_trains_and_round_trips(vr: str, gate: str, combine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # On 6 validation images no epoch could be clearly better, so the stage would be skipped;
    # here every epoch must train.
    monkeypatch.setattr(training._Selector, "why_nothing_can_be_kept", lambda self: None)
    config = MethodConfig(vr=vr, gate=gate, combine=combine)
    head = BioMedVRHead(config, 3, 16, 16, 20.0, _banks())
    images = (torch.rand(6, 3, 16, 16) * 255).to(torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    # The whole schedule, every epoch checked: no patience (the shipped `fast` stops at the first check without a gain).
    recipe = dataclasses.replace(load_recipe("fast"), epochs=2, eval_every=1, patience=None)
    result = train_head(head, _encoder(), images, labels, images, labels, recipe, seed=0,
                        device=torch.device("cpu"), shots=2)
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    assert result.history[result.selected_epoch]["val_accuracy"] == result.val_accuracy
    clone = BioMedVRHead(config, 3, 16, 16, 20.0, _banks())
    clone.load_state_dict(head.state_dict(), strict=True)
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(clone(x, _encoder()).fused, head(x, _encoder()).fused)


def test_selection_keeps_the_untrained_start_when_training_does_not_beat_it() -> None:
    """Epoch 0 (the untrained head) is a selection candidate; a trained epoch must beat it."""
    torch.manual_seed(0)
    images = (torch.rand(9, 3, 16, 16) * 255).to(torch.uint8)
    labels = torch.tensor([0, 1, 2] * 3)
    recipe = load_recipe("fast").with_overrides(epochs=3, eval_every=1)
    # Validation labels that contradict the training labels: training can only get worse there.
    # (Stage 1 only: the feature head would then be fitted on both sets together.)
    head = BioMedVRHead(MethodConfig(vr="full", feature_head=False), 3, 16, 16, 20.0, _banks())
    start = head.trainable_state()
    start_logits = predict_logits(head, _encoder(), images, device=torch.device("cpu")).argmax(1)
    result = train_head(head, _encoder(), images, (start_logits + 1) % 3, images, start_logits, recipe, seed=0,
                        device=torch.device("cpu"), shots=3)
    assert result.selected_epoch == 0 and result.val_accuracy == 1.0
    assert result.history[0]["epoch"] == 0 and "epoch 0" in result.selection_rule
    assert all(torch.equal(v, start[k]) for k, v in head.trainable_state().items())
    # An epoch that is clearly better on validation is chosen instead: validate on what a trained
    # head predicts (the same training, seeded), where the start is mostly wrong.
    images = (torch.rand(30, 3, 16, 16) * 255).to(torch.uint8)
    labels = torch.arange(30) % 3
    # clear_z 1.5 (the default before 2026-12-07): the start's 6 or more mistakes in 30 can then be clearly gained.
    config = MethodConfig(vr="full", feature_head=False, clear_z=1.5)
    longer = recipe.with_overrides(epochs=10, eval_every=5)
    trained = BioMedVRHead(config, 3, 16, 16, 20.0, _banks())
    train_head(trained, _encoder(), images, labels, None, None, longer, seed=0, device=torch.device("cpu"), shots=10)
    target = predict_logits(trained, _encoder(), images, device=torch.device("cpu")).argmax(1)
    head = BioMedVRHead(config, 3, 16, 16, 20.0, _banks())
    start_accuracy = float((predict_logits(head, _encoder(), images, device=torch.device("cpu")).argmax(1) == target)
                           .float().mean())
    assert start_accuracy <= 0.8  # at least 6 of 30 to gain: otherwise no epoch could be clearly better
    result = train_head(head, _encoder(), images, labels, images, target, longer, seed=0, device=torch.device("cpu"),
                        shots=10)
    assert result.selected_epoch == 10 and result.val_accuracy == 1.0


def test_clearly_better_is_a_paired_check() -> None:
    from biomedvr_cli.method.feature_head import clearly_better

    start = torch.tensor([True] * 10 + [False] * 10)
    z = 1.5
    assert clearly_better(torch.ones(20, dtype=torch.bool), start, z)  # +10 net > 1.5 * sqrt(10) = 4.7
    assert not clearly_better(start.clone(), start, z)  # no change
    swapped = torch.tensor([False] * 4 + [True] * 6 + [True] * 8 + [False] * 2)  # gains 8, loses 4
    assert not clearly_better(swapped, start, z)  # +4 net < 1.5 * sqrt(12) = 5.2
    assert clearly_better(swapped, start, z=1.0)  # +4 net > sqrt(12) = 3.5


def test_clearly_more_likely_is_a_paired_check_on_log_loss() -> None:
    from biomedvr_cli.method.feature_head import clearly_more_likely

    reference = torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0, 0.8, 1.2, 0.9])
    z = 1.5
    steady = reference - 0.1  # the same small gain on every image: no spread, clearly better
    assert clearly_more_likely(steady, reference, z)
    assert not clearly_more_likely(reference.clone(), reference, z)  # no gain
    assert not clearly_more_likely(reference + 0.1, reference, z)  # a loss
    # mean gain 0.1 with per-image gains of +1.1 / -0.9: standard error 1.07 / sqrt(8) = 0.38
    noisy = reference - torch.tensor([1.1, -0.9] * 4)
    assert not clearly_more_likely(noisy, reference, z)
    assert clearly_more_likely(noisy, reference, z=0.2)  # 0.1 > 0.2 * 0.38
    assert not clearly_more_likely(torch.zeros(1), torch.ones(1), z)  # one image has no spread to judge by


def test_head_tests_differ_where_the_gain_is_in_confidence() -> None:
    """A head that makes the right answers surer but flips few images passes only the test that also weighs log-loss."""
    from biomedvr_cli.method.feature_head import fit_feature_head

    torch.manual_seed(0)
    classes, dim, per_class = 4, 16, 12
    labels = torch.arange(classes * per_class) % classes
    prototypes = F.normalize(torch.randn(classes, dim), dim=1)
    features = F.normalize(prototypes[labels] + 0.8 * torch.randn(labels.numel(), dim) / dim**0.5, dim=1)
    # a start that is right on 46 of 48 images, by a thin margin: 2 flips cannot be told from noise
    offsets = 0.3 * F.one_hot(labels, classes).float()
    wrong = torch.arange(labels.numel()) < 2
    offsets[wrong] = 0.3 * F.one_hot((labels[wrong] + 1) % classes, classes).float()
    # at 1.5 standard errors 2 flips are noise (2 < 1.5 * sqrt(2)); at today's 0.5 they would pass
    by_either = fit_feature_head(offsets, features, labels, classes, seed=0,
                                 config=MethodConfig(head_folds=4, head_combine="select", head_test="either", head_clear_z=1.5,
                                                     head_family="logistic"))
    by_accuracy = fit_feature_head(offsets, features, labels, classes, seed=0,
                                   config=MethodConfig(head_folds=4, head_combine="select", head_test="accuracy",
                                                       head_clear_z=1.5, head_family="logistic"))
    assert not math.isinf(by_either.penalty) and by_either.cv_accuracy >= by_either.start_cv_accuracy
    assert math.isinf(by_accuracy.penalty)
    with pytest.raises(ValueError, match="unknown head test"):
        MethodConfig(head_folds=4, head_test="vibes")


def test_no_negative_expert_has_no_gate() -> None:
    head = BioMedVRHead(MethodConfig(negative=False), 3, 16, 16, 20.0, _banks())
    assert not hasattr(head, "gate") and not hasattr(head, "vr_neg")
    out = head(torch.rand(2, 3, 16, 16), _encoder())
    assert out.negative is None and torch.equal(out.fused, out.positive)


@pytest.mark.slow  # two full trainings
def test_training_is_repeatable() -> None:
    images = (torch.rand(6, 3, 16, 16) * 255).to(torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    recipe = load_recipe("fast").with_overrides(epochs=3, eval_every=1)
    states = []
    for _ in range(2):
        head = BioMedVRHead(MethodConfig(), 3, 16, 16, 20.0, _banks())
        train_head(head, _encoder(), images, labels, images, labels, recipe, seed=7, device=torch.device("cpu"), shots=2)
        states.append(head.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_nan_loss_stops_with_training_error() -> None:
    head = BioMedVRHead(MethodConfig(), 3, 16, 16, 20.0, _banks())
    images = (torch.rand(3, 3, 16, 16) * 255).to(torch.uint8)
    labels = torch.tensor([0, 1, 2])
    with pytest.raises(TrainingError, match="nothing was written"):
        train_head(head, lambda x: torch.full((x.shape[0], 16), float("nan")), images, labels, None, None,
                   load_recipe("fast").with_overrides(epochs=1), seed=0, device=torch.device("cpu"), shots=1)


def test_recipes_are_data() -> None:
    assert {"paper", "fast"} <= set(available_recipes())
    paper = load_recipe("paper")
    assert (paper.epochs, paper.lr, paper.batch_size, paper.batch_size_one_shot) == (400, 40.0, 64, 16)


def test_invalid_method_choices() -> None:
    with pytest.raises(ValueError):
        MethodConfig(vr="swirl")
    with pytest.raises(ValueError):
        MethodConfig(gate="everything")


def _noise_task(count: int, classes: int, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sentence scores right 60% of the time, image features that carry no information, labels."""
    labels = torch.arange(count) % classes
    noise = F.normalize(torch.randn(count, dim), dim=1)
    offsets = 2.0 * F.one_hot(labels, classes) * (torch.rand(count, 1) < 0.6)
    return offsets, noise, labels


def _change_on_new_images(fit, offsets: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of the fitted head minus that of the sentence scores alone, on new images."""
    head = fit.scale * offsets + features @ fit.weight.t() + fit.bias
    return float((head.argmax(1) == labels).float().mean() - (offsets.argmax(1) == labels).float().mean())


def _signal_features(labels: torch.Tensor, classes: int, dim: int) -> torch.Tensor:
    """Image features that tell the classes apart (a prototype each plus a little noise)."""
    prototypes = F.normalize(torch.randn(classes, dim), dim=1)
    return F.normalize(prototypes[labels] + 0.3 * torch.randn(labels.numel(), dim) / dim**0.5, dim=1)


@pytest.mark.slow  # eleven penalties cross-validated on three data sets
def test_feature_head_keeps_the_start_on_noise_and_learns_from_signal() -> None:
    """The penalty is chosen by cross-validation; a head on noise features costs nothing on new images."""
    import math

    from biomedvr_cli.method.feature_head import fit_feature_head, solve

    torch.manual_seed(0)
    classes, dim, per_class = 4, 32, 10

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _noise_task(count, classes, dim)

    offsets, noise, labels = draw(classes * per_class)
    select = MethodConfig(head_combine="select", head_family="logistic")  # the logistic penalties' behaviour
    strict = fit_feature_head(offsets, noise, labels, classes, seed=0, config=dataclasses.replace(select, head_clear_z=1.5))
    assert math.isinf(strict.penalty) and torch.count_nonzero(strict.weight) == 0 and strict.folds == 5
    fit = fit_feature_head(offsets, noise, labels, classes, seed=0, config=select)
    # at 0.5 standard errors this draw lets a head through (it rescales the start and breaks its ties),
    # with a strong penalty: on new noise images it is no worse than the start
    assert fit.penalty >= 1e-2
    assert _change_on_new_images(fit, *draw(4000)) > -0.01
    signal = _signal_features(labels, classes, dim)
    fit = fit_feature_head(torch.zeros(labels.numel(), classes), signal, labels, classes, seed=0, config=select)
    assert not math.isinf(fit.penalty) and fit.cv_accuracy > 0.9 > fit.start_cv_accuracy
    # a stronger penalty keeps the head closer to the start
    weak, _, _ = solve(offsets, signal, labels, classes, 0.001, steps=100)
    strong, _, _ = solve(offsets, signal, labels, classes, 1.0, steps=100)
    assert strong.norm() < weak.norm()


def test_feature_head_needs_two_images_of_some_class() -> None:
    import math

    from biomedvr_cli.method.feature_head import fit_feature_head

    fit = fit_feature_head(torch.zeros(3, 3), F.normalize(torch.randn(3, 8), dim=1), torch.tensor([0, 1, 2]), 3,
                           seed=0, config=MethodConfig())
    assert math.isinf(fit.penalty) and fit.cv_accuracy is None and "not fitted" in fit.describe()


def test_signed_combination_starts_at_the_positive_expert() -> None:
    head = BioMedVRHead(MethodConfig(vr="full", combine="signed"), 3, 16, 16, 20.0, _banks())
    out = head(torch.rand(2, 3, 16, 16), _encoder())
    assert out.negative is not None and torch.equal(out.fused, out.positive)
    with torch.no_grad():
        head.gate.weight.fill_(-0.5)
    out = head(torch.rand(2, 3, 16, 16), _encoder())
    assert torch.allclose(out.fused, out.positive - 0.5 * out.negative, atol=1e-6)


def test_class_scores_stay_fp32_under_bf16_autocast() -> None:
    head = BioMedVRHead(MethodConfig(vr="full"), 3, 16, 16, 20.0, _banks())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(torch.rand(2, 3, 16, 16), _encoder())
    assert out.positive.dtype == torch.float32 and out.fused.dtype == torch.float32


@pytest.mark.parametrize("select, expected", [("log-loss", 1e-3), ("accuracy", 1e-2)])
def test_head_penalty_is_chosen_by_the_configured_rule(monkeypatch, select: str, expected: float) -> None:
    """Among penalties that pass the test, log-loss picks the lower held-out log-loss, accuracy the more right."""
    from biomedvr_cli.method import feature_head

    n = 40
    start = torch.arange(n) < 20  # the sentence scores: 20 of 40 right
    outcomes = {math.inf: (start, torch.full((n,), 2.0)),
                1e-2: (torch.arange(n) < 36, torch.full((n,), 0.8)),  # most right, less sure
                1e-3: (torch.arange(n) < 34, torch.full((n,), 0.5))}  # two fewer right, lower log-loss

    def fake_cross_validate(offsets, features, labels, num_classes, penalty, fold_of, folds, steps):
        return outcomes.get(penalty, (start, torch.full((n,), 3.0)))

    monkeypatch.setattr(feature_head, "_cross_validate", fake_cross_validate)
    labels = torch.arange(n) % 4
    config = MethodConfig(head_combine="select", head_select=select, head_test="accuracy", head_penalties=(1e-2, 1e-3))
    fit = feature_head.fit_feature_head(torch.zeros(n, 4), F.normalize(torch.randn(n, 8), dim=1), labels, 4,
                                        seed=0, config=config)
    assert fit.penalty == expected
    assert fit.cv_accuracy == pytest.approx(float(outcomes[expected][0].float().mean()))
    assert fit.cv_nll == pytest.approx(float(outcomes[expected][1].mean()))


def test_head_selection_is_validated_and_old_adapters_read_as_accuracy() -> None:
    with pytest.raises(ValueError, match="unknown head selection"):
        MethodConfig(head_select="f1")
    assert MethodConfig().head_select == "log-loss"
    assert MethodConfig.from_dict({"feature_head": True}).head_select == "accuracy"
    assert MethodConfig.from_dict(MethodConfig().to_dict()).head_select == "log-loss"


def test_averaged_head_weights_each_penalty_by_its_held_out_likelihood(monkeypatch) -> None:
    """Pseudo-BMA: weights are softmax(-summed held-out log-loss); the head is the weighted sum of the refits."""
    from biomedvr_cli.method import feature_head

    torch.manual_seed(0)
    n, classes = 40, 4
    labels = torch.arange(n) % classes
    right = F.one_hot(labels, classes).float()
    # held-out logits: the start is unsure, 1e-2 a little surer, 1e-3 much surer, 1e-4 hopeless
    margins = {math.inf: 0.1, 1e-2: 0.15, 1e-3: 0.3, 1e-4: -5.0}

    def fake_held_out(offsets, features, labels_, num_classes, penalty, fold_of, folds, steps):
        return margins[penalty] * right

    monkeypatch.setattr(feature_head, "held_out_logits", fake_held_out)
    features = F.normalize(torch.randn(n, 8), dim=1)
    offsets = torch.randn(n, classes)
    config = MethodConfig(head_combine="average", head_penalties=(1e-2, 1e-3, 1e-4))
    fit = feature_head.fit_feature_head(offsets, features, labels, classes, seed=0, config=config)
    summed = torch.tensor([float(F.cross_entropy(margins[p] * right, labels, reduction="sum"))
                           for p in (math.inf, 1e-2, 1e-3, 1e-4)], dtype=torch.float64)
    prior = torch.tensor([0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3], dtype=torch.float64)  # half on the start
    assert config.head_start_prior == 0.5
    expected = torch.softmax(-summed + prior.log(), 0)
    assert expected[3] < feature_head.AVERAGE_MIN_WEIGHT  # the hopeless one is left out, the rest rescaled
    kept = expected[:3] / expected[:3].sum()
    assert [p for p, _ in fit.mixture] == [math.inf, 1e-2, 1e-3]
    assert [w for _, w in fit.mixture] == pytest.approx(kept.tolist())
    assert fit.penalty == 1e-3 and fit.uses_features and "averaged" in fit.describe()
    weight, bias, scale = feature_head.solve_mixture(offsets, features, labels, classes, fit.mixture, steps=100)
    parts = [feature_head.solve(offsets, features, labels, classes, p, steps=100) for p, _ in fit.mixture]
    assert torch.allclose(weight, sum(w * part[0] for (_, w), part in zip(fit.mixture, parts)), atol=1e-6)
    assert scale == pytest.approx(sum(w * part[2] for (_, w), part in zip(fit.mixture, parts)))
    assert torch.allclose(fit.weight, weight) and torch.allclose(fit.bias, bias)
    mixed = sum(w * margins[p] for p, w in fit.mixture) * right
    assert fit.cv_nll == pytest.approx(float(F.cross_entropy(mixed, labels)), rel=1e-5)


@pytest.mark.slow  # `--head-combine average`, an option, not the default: seconds of fitting
def test_averaged_head_on_noise_costs_little_and_learns_from_signal() -> None:
    """On uninformative features the average leans on the start; on informative ones on the weak penalties."""
    from biomedvr_cli.method.feature_head import fit_feature_head

    torch.manual_seed(0)
    classes, dim, per_class = 4, 32, 10

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _noise_task(count, classes, dim)

    average = MethodConfig(head_combine="average")
    offsets, noise, labels = draw(classes * per_class)
    fit = fit_feature_head(offsets, noise, labels, classes, seed=0, config=average)
    assert _change_on_new_images(fit, *draw(4000)) > -0.01
    signal = _signal_features(labels, classes, dim)
    fit = fit_feature_head(torch.zeros(labels.numel(), classes), signal, labels, classes, seed=0, config=average)
    assert fit.uses_features and fit.cv_accuracy > 0.9 > fit.start_cv_accuracy
    assert sum(w for p, w in fit.mixture if math.isinf(p)) < 0.01


def test_head_combination_is_validated_and_old_adapters_read_as_select() -> None:
    with pytest.raises(ValueError, match="unknown head combination"):
        MethodConfig(head_combine="vote")
    assert MethodConfig().head_combine == "select"  # averaging was tried and not kept (docs/results.md)
    assert MethodConfig.from_dict({"feature_head": True}).head_combine == "select"
    recorded = MethodConfig(head_combine="average").to_dict()
    assert MethodConfig.from_dict(recorded).head_combine == "average"
    del recorded["head_combine"]  # an adapter written before the field: one penalty was selected
    assert MethodConfig.from_dict(recorded) == MethodConfig()
    for bad in (0.0, 1.0, -0.5, math.nan, True, "0.5"):
        with pytest.raises(ValueError, match="head_start_prior"):
            MethodConfig(head_start_prior=bad)

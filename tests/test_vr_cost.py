"""VR earns its time (issue 20): one encoder pass for plain views, early stopping, the VR report,
and the refit of a kept VR state on every labelled image (issue 17)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from biomedvr_cli.method import training
from biomedvr_cli.method.head import BioMedVRHead, MethodConfig
from biomedvr_cli.method.recipes import load_recipe
from biomedvr_cli.method.textbanks import TextBank
from biomedvr_cli.method.training import head_outputs, train_head
from biomedvr_cli.method.vr_stopping import ValidationStall

CPU = torch.device("cpu")


def _banks(dim: int = 16) -> dict[str, TextBank]:
    torch.manual_seed(1)
    owners = torch.tensor([0, 0, 1, 1, 2, 2])
    return {name: TextBank(F.normalize(torch.randn(6, dim), dim=1), owners, [f"{name} {i}" for i in range(6)])
            for name in ("descriptive", "distinctive", "confusion")}


class CountingEncoder:
    """A fixed random projection that counts the images it encodes."""

    def __init__(self, dim: int = 16) -> None:
        torch.manual_seed(2)
        self.proj = torch.randn(3 * 16 * 16, dim)
        self.images = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return F.normalize(x.flatten(1) @ self.proj, dim=1)


def _fitted_head(vr: str = "full") -> BioMedVRHead:
    """A head with a fitted feature head and a nonzero negative weight, views untrained."""
    head = BioMedVRHead(MethodConfig(vr=vr), 3, 16, 16, 20.0, _banks())
    torch.manual_seed(3)
    head.head_weight.copy_(torch.randn_like(head.head_weight) * 0.1)
    head.head_bias.copy_(torch.randn_like(head.head_bias))
    with torch.no_grad():
        for p in head.gate.parameters():
            p.fill_(0.3)
    return head


@pytest.mark.parametrize("vr", ["full", "mask"])
def test_plain_views_cost_one_pass_with_the_same_outputs(vr: str, monkeypatch: pytest.MonkeyPatch) -> None:
    head = _fitted_head(vr)
    images = (torch.rand(10, 3, 16, 16) * 255).to(torch.uint8)
    assert head.plain_views() and head.encoder_passes == 1
    one = CountingEncoder()
    fused1, sentences1, feats1 = head_outputs(head, one, images, device=CPU)
    monkeypatch.setattr(BioMedVRHead, "plain_views", lambda self: False)
    two = CountingEncoder()
    fused2, sentences2, feats2 = head_outputs(head, two, images, device=CPU)
    assert one.images == 10 and two.images == 20
    assert torch.allclose(fused1, fused2, atol=1e-6) and torch.allclose(sentences1, sentences2, atol=1e-6)
    assert torch.allclose(feats1, feats2, atol=1e-6)


def test_trained_or_padding_views_still_cost_two_passes() -> None:
    head = _fitted_head("full")
    with torch.no_grad():
        head.vr_neg.delta[0, 0, 0] = 0.5
    assert head.encoder_passes == 2
    encoder = CountingEncoder()
    head_outputs(head, encoder, (torch.rand(4, 3, 16, 16) * 255).to(torch.uint8), device=CPU)
    assert encoder.images == 8
    assert _fitted_head("padding").encoder_passes == 2  # the padding view shrinks the image even untrained


def test_training_still_sends_each_view_its_own_gradient() -> None:
    head = BioMedVRHead(MethodConfig(vr="full", feature_head=False), 3, 16, 16, 20.0, _banks())
    images = torch.rand(6, 3, 16, 16)
    out = head(images, CountingEncoder())
    out.fused.sum().backward()
    assert head.vr_pos.delta.grad is not None and head.vr_neg.delta.grad is not None


def _data(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return (torch.rand(n, 3, 16, 16) * 255).to(torch.uint8), torch.arange(n) % 3


def test_patience_stops_the_vr_stage_when_validation_does_not_improve() -> None:
    images, labels = _data()
    # A learning rate too small to change any prediction: no check can beat epoch 0.
    recipe = load_recipe("fast").with_overrides(epochs=40, eval_every=5, lr=1e-12, patience=2)
    lenient = MethodConfig(vr="full", feature_head=False, clear_z=0.5)  # a check an epoch could pass: the stage runs
    head = BioMedVRHead(lenient, 3, 16, 16, 20.0, _banks())
    result = train_head(head, CountingEncoder(), images, labels, images, labels, recipe, seed=0, device=CPU, shots=4)
    assert result.vr is not None
    assert result.vr.epochs_run == 10 and result.vr.stopped_early and not result.vr.kept
    assert result.vr.to_dict()["ran"] is True and result.vr.to_dict()["epochs_planned"] == 40
    assert "stops after 2 check(s) in a row without a higher validation accuracy" in result.selection_rule
    assert [h["epoch"] for h in result.history] == list(range(0, 11))
    without = replace(recipe, patience=None)  # with_overrides skips None values
    head = BioMedVRHead(lenient, 3, 16, 16, 20.0, _banks())
    result = train_head(head, CountingEncoder(), images, labels, images, labels, without, seed=0, device=CPU, shots=4)
    assert result.vr is not None and result.vr.epochs_run == 40 and not result.vr.stopped_early


def _fit(config: MethodConfig, images: torch.Tensor, labels: torch.Tensor, val: slice, recipe) -> tuple:
    head = BioMedVRHead(config, 3, 16, 16, 20.0, _banks())
    encoder = CountingEncoder()
    result = train_head(head, encoder, images, labels, images[val], labels[val], recipe, seed=0, device=CPU, shots=4)
    return head, result, encoder.images


def test_the_vr_stage_is_skipped_exactly_when_no_epoch_could_be_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = _data(30)
    recipe = load_recipe("fast").with_overrides(epochs=10, eval_every=5)
    config = MethodConfig(vr="full", head_folds=2, head_penalties=(1e-2,), head_lbfgs_steps=10)
    start_correct: list[int] = []
    real_consider = training._Selector.consider

    def spy(self, epoch: int) -> dict[str, float]:
        scores = real_consider(self, epoch)
        if epoch == 0:
            start_correct.append(int(self.start_correct.sum()))
        return scores

    monkeypatch.setattr(training._Selector, "consider", spy)
    # 9 validation images: even a start wrong on all of them leaves an epoch no way to gain more
    # than clear_z squared (9) net, so the stage cannot keep anything.
    head, skipped, encoded = _fit(config, images, labels, slice(21, 30), recipe)
    wrong = 9 - start_correct[0]
    assert skipped.vr is not None and skipped.vr.epochs_run == 0 and not skipped.vr.kept
    assert skipped.vr.skipped and f"{wrong} of 9 validation images wrong" in skipped.vr.skipped
    assert skipped.vr.to_dict()["skipped"] == skipped.vr.skipped and not skipped.vr.stopped_early
    # The same fit with the stage forced to run ends in the same adapter: no epoch passed the check.
    monkeypatch.setattr(training._Selector, "why_nothing_can_be_kept", lambda self: None)
    head_run, ran, encoded_run = _fit(config, images, labels, slice(21, 30), recipe)
    assert ran.vr is not None and ran.vr.epochs_run > 0 and ran.vr.skipped is None and not ran.vr.kept
    assert skipped.selected_epoch == ran.selected_epoch == 0
    for name, value in head_run.trainable_state().items():
        assert torch.equal(head.trainable_state()[name], value), name
    assert encoded < encoded_run  # and it cost fewer encoder passes
    # With a check the start's mistakes could pass (wrong > clear_z squared), the stage runs.
    monkeypatch.undo()
    _, lenient, _ = _fit(replace(config, clear_z=0.5), images, labels, slice(21, 30), recipe)
    assert start_correct[-1] < 9
    assert lenient.vr is not None and lenient.vr.skipped is None and lenient.vr.epochs_run > 0


def test_a_kept_vr_state_is_retrained_on_every_label(monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = _data()

    def keep_every_epoch(self, epoch: int) -> dict[str, float]:  # a selector that keeps each trained epoch
        self.epoch, self.accuracy, self.nll = epoch, 0.5, 1.0
        self.state = self.head.trainable_state()
        return {"val_accuracy": 0.5 + epoch, "val_nll": 1.0}

    monkeypatch.setattr(training._Selector, "consider", keep_every_epoch)
    recipe = load_recipe("fast").with_overrides(epochs=4, eval_every=2)
    seen: list[tuple[int, int | None]] = []
    real = training.train_vr

    def spy(head, encode, train, val, recipe, **kw):
        seen.append((len(train), kw.get("stop_after")))
        return real(head, encode, train, val, recipe, **kw)

    monkeypatch.setattr(training, "train_vr", spy)
    head = BioMedVRHead(MethodConfig(vr="full", feature_head=False), 3, 16, 16, 20.0, _banks())
    result = train_head(head, CountingEncoder(), images, labels, images[:6], labels[:6], recipe, seed=0, device=CPU,
                        shots=4)
    assert result.selected_epoch == 4 and seen == [(12, None), (18, 4)]
    assert result.estimate is not None and result.estimate.kind == "validation-before-refit"
    assert result.selection_rule.endswith(training.REFIT_NOTE)
    assert result.vr is not None and result.vr.kept and result.vr.refit_seconds > 0


def test_after_a_kept_vr_epoch_the_estimate_is_not_the_untrained_views_cross_validation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The head's folds ran through the untrained views: another model than the saved one, so not its figure."""
    images, labels = _data()

    def keep_every_epoch(self, epoch: int) -> dict[str, float]:
        self.epoch, self.accuracy, self.nll = epoch, 0.5, 1.0
        self.state = self.head.trainable_state()
        return {"val_accuracy": 0.5 + epoch, "val_nll": 1.0}

    monkeypatch.setattr(training._Selector, "consider", keep_every_epoch)
    recipe = load_recipe("fast").with_overrides(epochs=2, eval_every=2)
    head = BioMedVRHead(MethodConfig(vr="full", head_penalties=(1e-2,)), 3, 16, 16, 20.0, _banks())
    result = train_head(head, CountingEncoder(), images, labels, images[:6], labels[:6], recipe, seed=0, device=CPU,
                        shots=4)
    assert result.selected_epoch == 2 and result.feature_head is not None
    assert result.feature_head.cv_accuracy is not None  # a cross-validated figure existed, and was not used
    assert result.estimate is not None and result.estimate.kind == "validation-before-refit"
    assert result.estimate.accuracy == 0.5 and result.estimate.images == 6


@pytest.mark.slow  # a whole fit with its cross-validated head (about 15 s)
def test_the_saved_head_reports_its_cross_validated_estimate() -> None:
    images, labels = _data(24)
    recipe = load_recipe("fast").with_overrides(epochs=1, eval_every=1)
    head = BioMedVRHead(MethodConfig(vr="full"), 3, 16, 16, 20.0, _banks())
    result = train_head(head, CountingEncoder(), images[:12], labels[:12], images[12:], labels[12:], recipe, seed=0,
                        device=CPU, shots=4)
    assert result.feature_head is not None and result.estimate is not None
    if result.feature_head.cv_accuracy is None:
        assert result.estimate.kind == "validation"
    else:
        assert result.estimate.kind == "cross-validation" and result.estimate.images == 24
        assert result.estimate.accuracy == result.feature_head.cv_accuracy


def test_patience_counts_accuracy_not_a_falling_nll() -> None:
    """A validation NLL that keeps falling at the same accuracy does not keep the VR stage going."""
    stall = ValidationStall(2)
    for accuracy, nll in ((0.5, 1.0), (0.5, 0.9), (0.5, 0.8)):
        stall.record({"val_accuracy": accuracy, "val_nll": nll})
    assert stall.exhausted
    stall = ValidationStall(2)
    for accuracy in (0.5, 0.5, 0.55, 0.55):
        stall.record({"val_accuracy": accuracy, "val_nll": 1.0})
    assert not stall.exhausted  # the third check was higher: one check since the best
    assert not ValidationStall(None).exhausted


def test_why_no_epoch_can_pass_is_the_check_at_its_best_case() -> None:
    from biomedvr_cli.method.vr_stopping import why_no_epoch_can_pass

    def start(wrong: int, n: int = 40) -> torch.Tensor:
        return torch.arange(n) >= wrong

    # at 3 standard errors an epoch must gain more than 9 net: 9 mistakes are not enough, 10 are
    assert why_no_epoch_can_pass(start(9), 3.0) is not None and why_no_epoch_can_pass(start(10), 3.0) is None
    assert "9 of 40 validation images wrong" in why_no_epoch_can_pass(start(9), 3.0)
    assert why_no_epoch_can_pass(start(2), 1.5) is not None and why_no_epoch_can_pass(start(3), 1.5) is None
    assert why_no_epoch_can_pass(start(0), 0.0) is not None  # a perfect start cannot be beaten

"""Training a BioMedVR head: the feature head on the start's features, then the VR stage.

Plain functions that report through a callback and never print.

1. With ``feature_head``, the head is fitted first on the support images' features through
   the untrained views, its penalty chosen by cross-validation (``method.feature_head``).
2. The VR patterns and the negative expert's weight are trained through the whole head
   (SGD/AdamW, augmentation). The start is epoch 0 of the selection; a trained epoch is kept
   only when it is *clearly* better on the validation split (a paired check, see
   :func:`feature_head.clearly_better`), and among those the best accuracy, then NLL, wins.
   A few validation images cannot otherwise tell a better epoch from a lucky one.
   With a recipe ``patience``, the stage stops once that many validation checks in a row
   bring no higher validation accuracy than the best so far (the start included): VR training that is not
   going to be kept is not paid for in full. When the start gets so few validation images wrong
   that no epoch could pass the check, the stage is skipped (``VRReport.skipped`` says why).
3. When a trained epoch was kept, the VR stage is run again from the start on every labelled
   image (support and validation) for the kept number of epochs, on the same schedule, so the
   saved patterns have seen every label (as the feature head does).
4. The feature head is fitted again, on every labelled image through the kept views. Its
   penalty is chosen by cross-validation through the untrained views: the trained views have
   been fitted to the support images, which would bias that choice.
Without a validation split the last epoch is kept. ``TrainResult.estimate`` says which held-out
figure describes the saved model: cross-validation when the feature head was refitted on all
through untrained views; after a kept VR epoch, the selected epoch's validation figure from
before the refit (``validation-before-refit``), or none without a validation split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from biomedvr_cli.errors import TrainingError
from biomedvr_cli.method.augment import random_resized_crop
from biomedvr_cli.method.feature_head import FeatureHeadFit, clearly_better, fit_feature_head, solve_mixture
from biomedvr_cli.method.head import BioMedVRHead
from biomedvr_cli.method.losses import biomedvr_loss
from biomedvr_cli.method.recipes import Recipe
from biomedvr_cli.method.vr_stopping import ValidationStall, why_no_epoch_can_pass

SELECTION_BEST_VAL = (
    "the untrained start (epoch 0) unless an epoch is clearly better on validation (paired check); "
    "then best validation accuracy (ties: lower NLL), evaluated every {every} epoch(s)"
)
SELECTION_LAST = "last epoch (no validation split)"
REFIT_NOTE = "; the kept epoch count was then retrained on support + validation"

Encode = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EpochReport:
    """What the progress callback receives after each epoch."""

    epoch: int
    epochs: int
    loss: float
    val_accuracy: float | None
    best_val_accuracy: float | None
    elapsed: float
    eta: float


@dataclass
class TrainResult:
    """The selected state and how it was chosen."""

    state: dict[str, torch.Tensor]
    selected_epoch: int
    selection_rule: str
    val_accuracy: float | None
    val_nll: float | None
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    feature_head: FeatureHeadFit | None = None
    vr: VRReport | None = None
    estimate: HeldOutEstimate | None = None


@dataclass
class VRReport:
    """What the VR stage did: for the fit's output (did it run, how far, was it kept, what it cost)."""

    epochs_planned: int
    epochs_run: int
    stopped_early: bool
    kept_epoch: int
    seconds: float
    refit_seconds: float = 0.0
    skipped: str | None = None  # why no epoch was trained, when the stage could not have kept one

    @property
    def kept(self) -> bool:
        return self.kept_epoch > 0

    def to_dict(self) -> dict[str, float | int | bool | str | None]:
        return {"ran": self.epochs_run > 0, "epochs_planned": self.epochs_planned, "epochs_run": self.epochs_run,
                "stopped_early": self.stopped_early, "kept": self.kept, "kept_epoch": self.kept_epoch,
                "seconds": round(self.seconds + self.refit_seconds, 3), "skipped": self.skipped}


@dataclass
class HeldOutEstimate:
    """The held-out accuracy/NLL that describes the saved model, and what kind of figure it is."""

    accuracy: float | None
    nll: float | None
    kind: str  # "validation" | "cross-validation" | "validation-before-refit" | "none"
    images: int

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {"accuracy": self.accuracy, "nll": self.nll, "kind": self.kind, "images": self.images}


@dataclass
class LabelledImages:
    """uint8 images [N,3,S,S] and their class indices."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def _autocast(device: torch.device):
    # bf16 autocast helps on CUDA; on CPU it is slower for these sizes, so it stays off.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()  # evaluation only: no autograd graph through the VR pattern and the backbone
def head_outputs(head: BioMedVRHead, encode: Encode, images: torch.Tensor, *, batch_size: int = 256,
                 device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fused logits, sentence logits, positive-view features) on the CPU, in bounded batches."""
    device = device or next(head.buffers()).device
    head.eval()
    fused, sentences, features = [], [], []
    for start in range(0, images.shape[0], batch_size):
        batch = _to_float(images[start : start + batch_size].to(device))
        with _autocast(device):
            out = head(batch, encode)
        fused.append(out.fused.float().cpu())
        sentences.append(out.sentences.float().cpu())
        features.append(out.pos_features.float().cpu())
    if not fused:
        empty = torch.empty(0, head.num_classes)
        return empty, empty, torch.empty(0, head.feature_dim)  # the feature width, for what multiplies it
    return torch.cat(fused), torch.cat(sentences), torch.cat(features)


def predict_logits(head: BioMedVRHead, encode: Encode, images: torch.Tensor, *, batch_size: int = 256,
                   device: torch.device | None = None) -> torch.Tensor:
    """Fused logits for uint8 or [0,1] images, in bounded batches (no augmentation)."""
    return head_outputs(head, encode, images, batch_size=batch_size, device=device)[0]


def _make_optimizer(head: BioMedVRHead, recipe: Recipe) -> torch.optim.Optimizer:
    params = [p for p in head.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    raise TrainingError(f"unknown optimizer {recipe.optimizer!r} in recipe {recipe.name!r}", "use sgd or adamw")


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class _Selector:
    """Keeps the untrained start unless an epoch is clearly better on validation, then the best such epoch."""

    def __init__(self, head: BioMedVRHead, encode: Encode, val: LabelledImages | None, device: torch.device) -> None:
        self.head, self.encode, self.val, self.device = head, encode, val, device
        self.best_key: tuple[float, float] | None = None
        self.start_correct: torch.Tensor | None = None
        self.epoch, self.accuracy, self.nll = 0, None, None
        self.state = head.trainable_state()

    def consider(self, epoch: int) -> dict[str, float]:
        """Evaluate the current state on validation; keep it when clearly better than the start and the best so far."""
        assert self.val is not None
        logits = predict_logits(self.head, self.encode, self.val.images, device=self.device)
        correct = logits.argmax(1) == self.val.labels
        accuracy = float(correct.float().mean())
        nll = float(F.cross_entropy(logits, self.val.labels))
        if self.start_correct is None:
            self.start_correct = correct
            keep = True
        else:
            keep = clearly_better(correct, self.start_correct, self.head.config.clear_z) and (accuracy, -nll) > self.best_key
        if keep:
            self.best_key = (accuracy, -nll)
            self.epoch, self.accuracy, self.nll = epoch, accuracy, nll
            self.state = self.head.trainable_state()
        return {"val_accuracy": accuracy, "val_nll": nll}

    def why_nothing_can_be_kept(self) -> str | None:
        """Why no trained epoch could be kept (:func:`vr_stopping.why_no_epoch_can_pass`), or None."""
        if self.start_correct is None:  # the start was not scored: nothing to judge by, so train
            return None
        return why_no_epoch_can_pass(self.start_correct, self.head.config.clear_z)


def _train_epoch(head: BioMedVRHead, encode: Encode, train: LabelledImages, optimizer, scheduler, recipe: Recipe, *,
                 batch_size: int, generator: torch.Generator, device: torch.device, epoch: int) -> float:
    """One pass over the support set with augmentation; returns the mean loss."""
    head.train()
    n = len(train)
    beta = head.config.beta if head.config.confusion_loss else 0.0
    order = torch.randperm(n, generator=generator).to(device)
    total = 0.0
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        batch = random_resized_crop(_to_float(train.images[idx]), generator, scale=recipe.crop_scale, flip=recipe.flip)
        with _autocast(device):
            out = head(batch, encode)
            loss, _ = biomedvr_loss(out.fused.float(), None if out.negative is None else out.negative.float(),
                                    train.labels[idx], beta=beta, margin=head.config.margin)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the training loss became {float(loss.detach())} at epoch {epoch}; nothing was written",
                "lower the learning rate (--lr) or use --recipe paper; check the images are not blank",
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += float(loss.detach()) * idx.numel()
    return total / n


def train_vr(head: BioMedVRHead, encode: Encode, train: LabelledImages, val: LabelledImages | None, recipe: Recipe, *,
             seed: int, device: torch.device, shots: int, stop_after: int | None = None,
             progress: Callable[[EpochReport], None] | None = None) -> TrainResult:
    """Stage 1: train the VR patterns and gate on uint8 images; keep the selected state in ``head``.

    ``stop_after`` ends the run after that many epochs of the recipe's schedule (the refit on
    every label); the recipe's ``patience`` ends it once validation stops improving.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    head.to(device)
    train = LabelledImages(train.images.to(device), train.labels.to(device))
    has_val = val is not None and len(val) > 0
    batch_size = recipe.batch_size_one_shot if shots == 1 else recipe.batch_size
    steps_per_epoch = max(1, math.ceil(len(train) / batch_size))
    total_steps, warmup = recipe.epochs * steps_per_epoch, recipe.warmup_epochs * steps_per_epoch
    optimizer = _make_optimizer(head, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total_steps, warmup))
    selector = _Selector(head, encode, val if has_val else None, device)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    stall = ValidationStall(recipe.patience if has_val else None)
    skipped = None
    if has_val:
        history.append({"epoch": 0, **stall.record(selector.consider(0))})
        skipped = selector.why_nothing_can_be_kept()
    last = recipe.epochs if stop_after is None else min(recipe.epochs, stop_after)
    epoch = 0
    for epoch in range(1, 0 if skipped else last + 1):
        loss = _train_epoch(head, encode, train, optimizer, scheduler, recipe, batch_size=batch_size,
                            generator=generator, device=device, epoch=epoch)
        record: dict[str, float] = {"epoch": epoch, "loss": loss}
        if has_val and (epoch % recipe.eval_every == 0 or epoch == last):
            record.update(stall.record(selector.consider(epoch)))
        history.append(record)
        if progress is not None:
            elapsed = time.perf_counter() - start
            progress(EpochReport(epoch, last, loss, record.get("val_accuracy"), selector.accuracy, elapsed,
                                 elapsed / epoch * (last - epoch)))
        if stall.exhausted:
            break
    if has_val:
        head.load_state_dict(selector.state, strict=False)
        rule, selected = SELECTION_BEST_VAL.format(every=recipe.eval_every), selector.epoch
        if last % recipe.eval_every:  # the last epoch is checked too (with --epochs 1, the only one)
            rule += f" and at the last planned epoch ({last})"
        if recipe.patience is not None:
            rule += f"; stops after {recipe.patience} check(s) in a row without a higher validation accuracy"
    else:
        rule, selected = SELECTION_LAST, epoch
    seconds = time.perf_counter() - start
    return TrainResult(state=head.trainable_state(), selected_epoch=selected, selection_rule=rule,
                       val_accuracy=selector.accuracy, val_nll=selector.nll, seconds=seconds, history=history,
                       vr=VRReport(epochs_planned=last, epochs_run=epoch, stopped_early=epoch < last and not skipped,
                                   kept_epoch=selected if has_val else epoch, seconds=seconds, skipped=skipped))


def _set_feature_head(head: BioMedVRHead, weight: torch.Tensor, bias: torch.Tensor, scale: float) -> None:
    head.head_weight.copy_((weight / head.tau).to(head.head_weight.device))
    head.head_bias.copy_(bias.to(head.head_bias.device))
    head.sentence_scale.fill_(scale)


def fit_head_on_features(head: BioMedVRHead, encode: Encode, labelled: LabelledImages, *, seed: int,
                         device: torch.device, choose_with: dict[str, torch.Tensor] | None = None) -> FeatureHeadFit:
    """Fit the feature head on the (reprogrammed) features of ``labelled``, its penalty by cross-validation.

    With ``choose_with`` (a state of the head's views), the penalty is chosen on the features
    through those views instead, and only the final fit uses the current views: after VR
    training the support images' own scores are fitted, which would make cross-validation
    over them favour the sentence scores.
    """
    labels = labelled.labels.cpu()
    if choose_with is None:
        _, sentences, features = head_outputs(head, encode, labelled.images, device=device)
        fit = fit_feature_head(sentences, features, labels, head.num_classes, seed=seed, config=head.config)
    else:
        current = head.trainable_state()
        head.load_state_dict(choose_with, strict=False)
        _, sentences, features = head_outputs(head, encode, labelled.images, device=device)
        chosen = fit_feature_head(sentences, features, labels, head.num_classes, seed=seed, config=head.config)
        head.load_state_dict(current, strict=False)
        _, sentences, features = head_outputs(head, encode, labelled.images, device=device)
        weight, bias, scale = solve_mixture(sentences, features, labels, head.num_classes, chosen.mixture,
                                            steps=head.config.head_lbfgs_steps)
        fit = replace(chosen, weight=weight, bias=bias, scale=scale)
    _set_feature_head(head, fit.weight, fit.bias, fit.scale)
    return fit


# Training needs autograd whatever the caller's mode: a notebook often runs under torch.no_grad()
# or inference_mode(), and the VR stage would otherwise fail on some data and not on other.
@torch.inference_mode(False)
@torch.enable_grad()
def train_head(head: BioMedVRHead, encode: Encode, train_images: torch.Tensor, train_labels: torch.Tensor,
               val_images: torch.Tensor | None, val_labels: torch.Tensor | None, recipe: Recipe, *, seed: int,
               device: torch.device, shots: int, progress: Callable[[EpochReport], None] | None = None) -> TrainResult:
    """Feature head on the support set, VR training selected on validation, then both refitted on all labels."""
    train = LabelledImages(train_images, train_labels)
    val = LabelledImages(val_images, val_labels) if val_images is not None and val_labels is not None else None
    has_val = val is not None and len(val) > 0
    everything = train if not has_val else LabelledImages(
        torch.cat([train.images.cpu(), val.images.cpu()]), torch.cat([train.labels.cpu(), val.labels.cpu()]))
    head.to(device)
    untrained = head.trainable_state()
    views = {k: v for k, v in untrained.items() if not k.startswith(("head_", "sentence_scale"))}
    start = time.perf_counter()
    if head.config.feature_head:
        # Fitted on the support set only, so that validation stays unseen for the VR selection.
        fit_head_on_features(head, encode, train, seed=seed, device=device)
    head_seconds = time.perf_counter() - start
    result = train_vr(head, encode, train, val, recipe, seed=seed, device=device, shots=shots, progress=progress)
    assert result.vr is not None
    estimate = HeldOutEstimate(result.val_accuracy, result.val_nll, "validation" if has_val else "none",
                               len(val) if has_val else 0)
    if has_val and result.selected_epoch > 0:
        refit_start = time.perf_counter()
        _refit_vr_on_all(head, encode, everything, views, recipe, result.selected_epoch, seed=seed, device=device,
                         shots=shots)
        result.vr.refit_seconds = time.perf_counter() - refit_start
        result.selection_rule += REFIT_NOTE
        estimate.kind = "validation-before-refit"
    if head.config.feature_head:
        start = time.perf_counter()
        result.feature_head = fit_head_on_features(head, encode, everything, seed=seed, device=device,
                                                   choose_with=views if result.selected_epoch > 0 else None)
        head_seconds += time.perf_counter() - start
        if result.feature_head.cv_accuracy is not None and result.selected_epoch == 0:
            # The saved head has seen the validation images: its honest figure is the cross-validated one.
            # Not after a kept VR epoch: its folds ran through the untrained views, another model than
            # the saved one, so the figure of the selected epoch (or none) is kept and named as such.
            estimate = HeldOutEstimate(result.feature_head.cv_accuracy, result.feature_head.cv_nll, "cross-validation",
                                       len(everything))
    result.state = head.trainable_state()
    result.estimate = estimate
    result.seconds += head_seconds + result.vr.refit_seconds
    return result


def _refit_vr_on_all(head: BioMedVRHead, encode: Encode, everything: LabelledImages, views: dict[str, torch.Tensor],
                     recipe: Recipe, epochs: int, *, seed: int, device: torch.device, shots: int) -> None:
    """Train the views again from the start on every labelled image for ``epochs`` of the same schedule."""
    head.load_state_dict(views, strict=False)
    if head.config.feature_head:
        fit_head_on_features(head, encode, everything, seed=seed, device=device)
    train_vr(head, encode, everything, None, replace(recipe, patience=None), seed=seed, device=device, shots=shots,
             stop_after=epochs)

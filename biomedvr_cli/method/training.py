"""The fit loop: a plain function that trains a BioMedVR head and selects on validation.

It reports through a callback and never prints. Selection uses the validation split
only (never test): the state with the best validation accuracy wins, ties going to the
lower validation NLL; without a validation split the last epoch is kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from biomedvr_cli.method.augment import random_resized_crop
from biomedvr_cli.errors import TrainingError
from biomedvr_cli.method.head import BioMedVRHead
from biomedvr_cli.method.losses import biomedvr_loss
from biomedvr_cli.method.recipes import Recipe

SELECTION_BEST_VAL = (
    "best validation accuracy (ties: lower validation NLL), "
    "evaluated before training (epoch 0) and every {every} epoch(s)"
)
SELECTION_LAST = "last epoch (no validation split)"


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


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
@torch.no_grad()  # evaluation only: no autograd graph through the VR pattern and the backbone
def predict_logits(
    head: BioMedVRHead,
    encode: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Fused logits for uint8 or [0,1] images, in bounded batches (no augmentation)."""
    device = device or next(head.buffers()).device
    head.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = _to_float(images[start : start + batch_size].to(device))
        with _autocast(device):
            out.append(head(batch, encode).fused.float().cpu())
    return torch.cat(out) if out else torch.empty(0, head.num_classes)


def _autocast(device: torch.device):
    # bf16 autocast helps on CUDA; on CPU it is slower for these sizes, so it stays off.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


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


def train_head(
    head: BioMedVRHead,
    encode: Callable[[torch.Tensor], torch.Tensor],
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    val_images: torch.Tensor | None,
    val_labels: torch.Tensor | None,
    recipe: Recipe,
    *,
    seed: int,
    device: torch.device,
    shots: int,
    progress: Callable[[EpochReport], None] | None = None,
) -> TrainResult:
    """Train ``head`` on uint8 images [N,3,S,S]; return the selected state."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    head.to(device)
    optimizer = _make_optimizer(head, recipe)
    batch_size = recipe.batch_size_one_shot if shots == 1 else recipe.batch_size
    n = train_images.shape[0]
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total_steps = recipe.epochs * steps_per_epoch
    warmup_steps = recipe.warmup_epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total_steps, warmup_steps))
    beta = head.config.beta if head.config.confusion_loss else 0.0
    has_val = val_images is not None and val_images.shape[0] > 0
    rule = SELECTION_BEST_VAL.format(every=recipe.eval_every) if has_val else SELECTION_LAST
    train_images = train_images.to(device)
    train_labels = train_labels.to(device)

    best: tuple[float, float, int] | None = None  # (accuracy, -nll, epoch)
    best_state = head.trainable_state()
    best_acc = best_nll = None
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    if has_val:
        # The untrained head (zero VR pattern, initial gate) is a candidate too: when training
        # does not beat it on validation, the adapter keeps the start instead of ending below it.
        logits = predict_logits(head, encode, val_images, device=device)  # type: ignore[arg-type]
        best_acc = float((logits.argmax(1) == val_labels).float().mean())
        best_nll = float(F.cross_entropy(logits, val_labels))
        best = (best_acc, -best_nll, 0)
        history.append({"epoch": 0, "val_accuracy": best_acc, "val_nll": best_nll})
    for epoch in range(1, recipe.epochs + 1):
        head.train()
        order = torch.randperm(n, generator=generator).to(device)
        epoch_loss = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            batch = _to_float(train_images[idx])
            batch = random_resized_crop(batch, generator, scale=recipe.crop_scale, flip=recipe.flip)
            with _autocast(device):
                out = head(batch, encode)
                loss, _ = biomedvr_loss(
                    out.fused.float(),
                    None if out.negative is None else out.negative.float(),
                    train_labels[idx],
                    beta=beta,
                    margin=head.config.margin,
                )
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the training loss became {float(loss.detach())} at epoch {epoch}; nothing was written",
                    "lower the learning rate (--lr) or use --recipe paper; check the images are not blank",
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            epoch_loss += float(loss.detach()) * idx.numel()
        epoch_loss /= n
        record: dict[str, float] = {"epoch": epoch, "loss": epoch_loss}
        val_acc = None
        if has_val and (epoch % recipe.eval_every == 0 or epoch == recipe.epochs):
            logits = predict_logits(head, encode, val_images, device=device)  # type: ignore[arg-type]
            val_acc = float((logits.argmax(1) == val_labels).float().mean())
            val_nll = float(F.cross_entropy(logits, val_labels))
            record.update(val_accuracy=val_acc, val_nll=val_nll)
            key = (val_acc, -val_nll, epoch)
            if best is None or key[:2] > best[:2]:
                best = key
                best_state = head.trainable_state()
                best_acc, best_nll = val_acc, val_nll
        history.append(record)
        elapsed = time.perf_counter() - start
        if progress is not None:
            progress(
                EpochReport(epoch, recipe.epochs, epoch_loss, val_acc, best_acc, elapsed,
                            elapsed / epoch * (recipe.epochs - epoch))
            )
    if not has_val:
        best_state = head.trainable_state()
        selected = recipe.epochs
    else:
        selected = best[2] if best else recipe.epochs
    head.load_state_dict(best_state, strict=False)
    return TrainResult(
        state=best_state,
        selected_epoch=selected,
        selection_rule=rule,
        val_accuracy=best_acc,
        val_nll=best_nll,
        seconds=time.perf_counter() - start,
        history=history,
    )

"""Contrastive pretraining of the sandbox model on generated image-caption pairs.

Reproducible: the model is initialised from ``seed`` and batch ``i`` is generated from
``(seed, i)`` in a separate worker process (so drawing overlaps the model step). Half of
each batch comes as hard-negative pairs (captions differing in one attribute). The
learning-rate schedule is a warmup + cosine over ``steps``; ``minutes`` is a wall-clock
cap that stops early if the machine is slower than planned. The weights are saved as fp16
safetensors with the settings, the step count and the wall time in the metadata: at the end
to OUT, and periodically to ``OUT.partial`` (so a run killed outright leaves usable weights;
Ctrl-C, SIGTERM and divergence remove it, and OUT is untouched until the run has finished).

Run: ``biomedvr sandbox pretrain --out FILE`` (the one entry point; its option defaults are
``PretrainConfig``'s). Only the standard library is imported at module level, because the
command line reads ``PretrainConfig`` for its ``--help``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class PretrainConfig:
    """Every setting of a pretraining run (recorded in the weights' metadata)."""

    steps: int = 2400
    minutes: float = 48.0  # wall-clock budget: the schedule compresses to end by then
    seed: int = 0
    batch_size: int = 256
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    hard_fraction: float = 0.5
    pair_weight: float = 1.0  # weight of the two-way loss inside each hard-negative pair
    aux_weight: float = 1.0  # weight of the per-family linear heads on image embeddings (dropped after training)
    zoom_min: float = 0.7  # scale augmentation: each image drawn at a zoom uniform in [zoom_min, zoom_max]
    zoom_max: float = 1.1
    frame_probability: float = 0.3  # share of images shrunk into a constant-colour frame or letterbox
    frame_max_fraction: float = 0.15  # widest frame, as a fraction of the side
    threads: int = 2
    workers: int = 1
    eval_every: int = 100
    save_every_minutes: float = 5.0


# (field, lowest, highest, inclusive low): the ranges a run can be made with; anything else is refused at once.
_RANGES = (
    ("steps", 1, 1_000_000, True), ("seed", 0, 2**32 - 1, True), ("minutes", 0.0, 10_000.0, False), ("batch_size", 4, 4096, True),
    ("lr", 0.0, 1.0, False), ("warmup", 0, 1_000_000, True), ("weight_decay", 0.0, 10.0, True),
    ("hard_fraction", 0.0, 1.0, True), ("pair_weight", 0.0, 100.0, True), ("aux_weight", 0.0, 100.0, True),
    ("zoom_min", 0.1, 2.0, True), ("zoom_max", 0.1, 2.0, True), ("frame_probability", 0.0, 1.0, True),
    ("frame_max_fraction", 0.03, 0.4, True), ("threads", 1, 256, True), ("workers", 0, 64, True),
    ("eval_every", 0, 1_000_000, True), ("save_every_minutes", 0.0, 10_000.0, False),
)


def check_config(cfg: PretrainConfig) -> None:
    """Refuse a setting outside its range (UsageError naming the option) before anything is built."""
    from biomedvr_cli.errors import UsageError

    for name, low, high, inclusive in _RANGES:
        value = getattr(cfg, name)
        above = value >= low if inclusive else value > low
        if not (math.isfinite(value) and above and value <= high):
            bound = "at least" if inclusive else "above"
            raise UsageError(f"--{name.replace('_', '-')} is {value}; it must be {bound} {low} and at most {high}",
                             f"pass --{name.replace('_', '-')} in that range (default {getattr(PretrainConfig(), name)})")
    if cfg.zoom_min > cfg.zoom_max:
        default = PretrainConfig()
        raise UsageError(f"--zoom-min {cfg.zoom_min} is above --zoom-max {cfg.zoom_max}",
                         f"pass a --zoom-min at most --zoom-max (defaults {default.zoom_min} and {default.zoom_max})")


# Fixed images for the progress and final metrics, so runs and their saves compare directly.
ALIGNMENT_SEED = 12345
ALIGNMENT_N = 400


def _batch_tensors(seed: int, step: int, cfg: PretrainConfig, tokenizer) -> tuple[Any, Any, Any]:
    """Generate batch ``step`` deterministically: normalised images, token ids and attribute indices."""
    import numpy as np
    import torch

    from biomedvr_cli.sandbox.modelio import MEAN, STD
    from biomedvr_cli.sandbox.world import pretraining_batch

    rng = np.random.default_rng([seed, step])
    images, captions, attrs = pretraining_batch(
        rng, cfg.batch_size, hard_fraction=cfg.hard_fraction, zoom_range=(cfg.zoom_min, cfg.zoom_max),
        frame_probability=cfg.frame_probability, frame_max_fraction=cfg.frame_max_fraction)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return x.contiguous(), tokenizer(captions), torch.from_numpy(attrs)


class _Batches:
    """Iterable of batches start..steps-1, generated in a DataLoader worker."""

    def __init__(self, cfg: PretrainConfig, start: int = 0) -> None:
        import torch

        class _DS(torch.utils.data.IterableDataset):
            def __iter__(ds):  # noqa: N805
                from biomedvr_cli.sandbox.modelio import get_tokenizer

                torch.set_num_threads(1)  # generation is numpy; leave the cores to the model step
                tok = get_tokenizer()
                for step in range(start, cfg.steps):
                    yield _batch_tensors(cfg.seed, step, cfg, tok)

        self.loader = torch.utils.data.DataLoader(
            _DS(), batch_size=None, num_workers=cfg.workers, prefetch_factor=3 if cfg.workers else None
        )

    def __iter__(self):
        return iter(self.loader)


def _progress(step: int, elapsed_s: float, cfg: PretrainConfig) -> float:
    """Fraction of the run done: steps or wall clock, whichever is further along.

    On a free machine the step budget binds and the run is bit-for-bit reproducible; on a
    busy one the wall clock binds and the cosine is compressed so it still anneals fully
    (the metadata records which one bound and how many steps ran).
    """
    return max(step / cfg.steps, elapsed_s / (cfg.minutes * 60.0))


def _lr_at(step: int, frac: float, cfg: PretrainConfig) -> float:
    """Learning rate: linear warmup over ``warmup`` steps, then a cosine over the run's progress ``frac``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def _pair_loss(img, txt, scale):
    """Two-way contrastive loss inside each hard-negative pair (rows 2i, 2i+1).

    In the batch-wide loss a pair's twin is one negative among hundreds of easy ones, so
    the one attribute that separates them gets little gradient; this term isolates it.
    """
    import torch
    import torch.nn.functional as F

    n = img.shape[0] // 2
    i2 = img.view(n, 2, -1)
    t2 = txt.view(n, 2, -1)
    logits = scale * torch.einsum("npd,nqd->npq", i2, t2)  # [n, 2 images, 2 captions]
    target = torch.arange(2).repeat(n)
    return 0.5 * (F.cross_entropy(logits.reshape(2 * n, 2), target)
                  + F.cross_entropy(logits.transpose(1, 2).reshape(2 * n, 2), target))


# Periodic saves go to OUT + this suffix; OUT itself is written only when the run has finished.
CHECKPOINT_SUFFIX = ".partial"


def checkpoint_path(out: Path) -> Path:
    """Where a run writing ``out`` saves its periodic checkpoints (``w.safetensors.partial``)."""
    out = Path(out)
    return out.with_name(out.name + CHECKPOINT_SUFFIX)


def pretrain(
    out: Path,
    cfg: PretrainConfig | None = None,
    progress: Callable[[dict], None] | None = None,
    *,
    force: bool = False,
) -> dict:
    """Train from scratch and write ``out``; return the weights' metadata (steps, wall time, last metrics).

    ``out`` has no default, so nothing lands in the installed package unless asked for, and an
    existing file (the shipped weights included) is only replaced with ``force``, and only at
    the end: periodic saves go to :func:`checkpoint_path`, which a stopped or diverged run removes.
    """
    import os

    from biomedvr_cli.atomic import check_writable

    check_config(cfg or PretrainConfig())
    check_writable(Path(out), force=force)  # before minutes of training, not at the first save
    check_writable(checkpoint_path(out), force=force, option="--out")  # a killed run's checkpoint is kept
    # Sleep instead of spinning when cores are shared (must precede the first torch import).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from biomedvr_cli.sandbox.modelio import UNSEEN_WORDS_SEED_OFFSET, create_model, draw_unseen_words, get_tokenizer
    from biomedvr_cli.sandbox.properties import quick_alignment

    cfg = cfg or PretrainConfig()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    # The order of the draws from torch's seeded generator (model, then heads) fixes the weights.
    model = create_model()
    model.train()
    tokenizer = get_tokenizer()
    # Rows of words no caption contains never train; see draw_unseen_words.
    unseen_rows = draw_unseen_words(model, tokenizer, cfg.seed + UNSEEN_WORDS_SEED_OFFSET)
    heads = _aux_heads(model)
    opt = _optimiser(model, heads, cfg)
    run = _Run(out=Path(out), cfg=cfg, unseen_rows=unseen_rows)
    try:
        _train(model, heads, opt, tokenizer, run, progress)
        model.eval()
        run.metrics = quick_alignment(model, tokenizer, seed=ALIGNMENT_SEED, n=ALIGNMENT_N)
        _save(model, run, run.out)
    finally:
        # Done, diverged, interrupted or failed: the checkpoint of this run is not an output.
        # Only a run killed outright (SIGKILL, power loss) leaves it, for the user to keep or delete.
        _remove_checkpoint(run)
    return run.meta()


def _remove_checkpoint(run: _Run) -> None:
    """Delete the periodic checkpoint this run wrote (never one it did not write)."""
    if run.checkpointed:
        checkpoint_path(run.out).unlink(missing_ok=True)


@dataclass
class _Run:
    """A run in progress: what the weights' metadata records about it."""

    out: Path
    cfg: PretrainConfig
    unseen_rows: int
    t0: float = field(default_factory=time.time)
    step: int = 0
    stopped_by: str = "steps"
    metrics: dict[str, Any] = field(default_factory=dict)
    checkpointed: bool = False  # whether this run has written checkpoint_path(out)

    def meta(self) -> dict:
        """The metadata saved with the weights (and returned by ``pretrain``)."""
        from biomedvr_cli.sandbox.modelio import UNSEEN_WORDS_SEED_OFFSET

        return {
            "format": "biomedvr-sandbox-weights",
            "config": asdict(self.cfg),
            "steps_done": self.step,
            "wall_seconds": round(time.time() - self.t0, 1),
            "stopped_by": self.stopped_by,
            "unseen_word_rows": {"count": self.unseen_rows, "seed": self.cfg.seed + UNSEEN_WORDS_SEED_OFFSET},
            "metrics": self.metrics,
            "command": command_line(self.out, self.cfg),
        }


def command_line(out: Path, cfg: PretrainConfig) -> str:
    """The ``biomedvr sandbox pretrain`` call that repeats a run: steps, minutes, seed and any other non-default."""
    defaults = PretrainConfig()
    parts = [f"biomedvr sandbox pretrain --out {out}"]
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in ("steps", "minutes", "seed") or value != getattr(defaults, f.name):
            parts.append(f"--{f.name.replace('_', '-')} {value}")
    return " ".join(parts)


def _aux_heads(model):
    """Per-family linear heads on the image embedding (trained, never saved).

    A contrastive model alone sits at a saddle for attributes neither tower separates yet
    (shape, texture); the heads make the image tower see them, then the contrastive loss
    aligns the words.
    """
    import torch

    from biomedvr_cli.sandbox.vocabulary import FAMILIES

    embed_dim = int(model.text_projection.shape[1])
    return torch.nn.ModuleList([torch.nn.Linear(embed_dim, len(v)) for v in FAMILIES.values()])


def _optimiser(model, heads, cfg: PretrainConfig):
    """AdamW with weight decay on matrices only (not on embeddings, biases, norms or the logit scale)."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n] + list(heads.parameters())
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


def _train(model, heads, opt, tokenizer, run: _Run, progress: Callable[[dict], None] | None) -> None:
    """The optimisation loop: one step per generated batch until the step or minute budget is spent.

    Saves a checkpoint beside ``run.out`` (:func:`checkpoint_path`) every ``save_every_minutes``,
    so a run killed outright leaves usable weights while ``run.out`` (with ``--force``, the
    user's old file) stays untouched until the end; leaves ``run.step`` (steps done),
    ``run.stopped_by`` and ``run.metrics`` set.
    """
    from biomedvr_cli.sandbox.properties import quick_alignment

    cfg = run.cfg
    last_save = run.t0
    for step, (x, tokens, attrs) in enumerate(_Batches(cfg)):
        run.step = step
        frac = _progress(step, time.time() - run.t0, cfg)
        if frac >= 1.0:
            run.stopped_by = "minutes" if step < cfg.steps else "steps"
            break
        lr = _lr_at(step, frac, cfg)
        loss = _step(model, heads, opt, (x, tokens, attrs), lr, step, cfg)
        info = {"step": step, "loss": loss, "lr": lr, "elapsed_s": round(time.time() - run.t0, 1)}
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            model.eval()
            run.metrics = quick_alignment(model, tokenizer, seed=ALIGNMENT_SEED, n=ALIGNMENT_N)
            model.train()
            info.update(run.metrics)
        if progress:
            progress(info)
        if time.time() - last_save >= cfg.save_every_minutes * 60:
            run.checkpointed = True  # set first: an interrupt during the save still cleans up
            _save(model, run, checkpoint_path(run.out))
            last_save = time.time()
    else:
        run.step = cfg.steps


def _step(model, heads, opt, batch: tuple[Any, Any, Any], lr: float, step: int, cfg: PretrainConfig) -> float:
    """One optimiser step on ``batch`` (images, token ids, attribute indices) at ``lr``; returns the loss."""
    import torch

    from biomedvr_cli.errors import TrainingError

    for g in opt.param_groups:
        g["lr"] = lr
    loss = _loss(model, heads, *batch, cfg)
    if not torch.isfinite(loss):
        raise TrainingError(f"pretraining diverged at step {step}", "lower --lr or change --seed")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return float(loss.detach())


def _loss(model, heads, x, tokens, attrs, cfg: PretrainConfig):
    """CLIP's symmetric InfoNCE, plus the two-way loss inside hard-negative pairs and the auxiliary heads' loss."""
    import torch
    import torch.nn.functional as F

    img, txt, scale = model(x, tokens)[:3]
    logits = scale * img @ txt.t()
    labels = torch.arange(len(x))
    loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    n_pairs = int(cfg.batch_size * cfg.hard_fraction) // 2  # the pairs come first in each batch
    if n_pairs and cfg.pair_weight:
        loss = loss + cfg.pair_weight * _pair_loss(img[: 2 * n_pairs], txt[: 2 * n_pairs], scale)
    if cfg.aux_weight:
        loss = loss + cfg.aux_weight * _aux_loss(heads, img, attrs)
    return loss


def _aux_loss(heads, img, attrs):
    """Mean over the families of each head's cross-entropy on the images that have that family.

    A family can be absent from every image of a small batch (``granule_colour`` exists only
    when there are granules: -1 elsewhere); cross-entropy over no target is 0/0 = NaN, so such
    a family adds nothing in that batch. The divisor stays the number of heads, so batches
    where every family occurs (all batches of the shipped run) give the same loss as before.
    """
    import torch.nn.functional as F

    total = img.new_zeros(())
    for j, head in enumerate(heads):
        target = attrs[:, j]
        if bool((target >= 0).any()):
            total = total + F.cross_entropy(head(10.0 * img), target, ignore_index=-1)
    return total / len(heads)


def _save(model, run: _Run, path: Path) -> None:
    """Write the weights and the run's metadata to ``path`` atomically (the checkpoint, or ``run.out`` at the end)."""
    from biomedvr_cli.sandbox.modelio import save_weights

    save_weights(model, path, run.meta())

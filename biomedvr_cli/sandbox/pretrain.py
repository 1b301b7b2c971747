"""Contrastive pretraining of the sandbox model on generated image-caption pairs.

Reproducible: the model is initialised from ``seed`` and batch ``i`` is generated from
``(seed, i)`` in a separate worker process (so drawing overlaps the model step). Half of
each batch comes as hard-negative pairs (captions differing in one attribute). The
learning-rate schedule is a warmup + cosine over ``steps``; ``minutes`` is a wall-clock
cap that stops early if the machine is slower than planned. The weights are saved as fp16
safetensors with the settings, the step count and the wall time in the metadata,
periodically (so a stopped run leaves usable weights) and at the end.

Run: ``python -m biomedvr_cli.sandbox.pretrain --out FILE --steps N --minutes M --seed S``
(or ``biomedvr sandbox pretrain``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biomedvr_cli.sandbox import WEIGHTS_PATH


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
    threads: int = 2
    workers: int = 1
    eval_every: int = 100
    save_every_minutes: float = 5.0


def _batch_tensors(seed: int, step: int, cfg: PretrainConfig, tokenizer) -> tuple[Any, Any]:
    """Generate batch ``step`` deterministically: normalised images and token ids."""
    import torch

    from biomedvr_cli.sandbox.modelio import MEAN, STD
    from biomedvr_cli.sandbox.world import pretraining_batch

    rng = np.random.default_rng([seed, step])
    images, captions, attrs = pretraining_batch(rng, cfg.batch_size, hard_fraction=cfg.hard_fraction)
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


def pretrain(
    out: Path = WEIGHTS_PATH,
    cfg: PretrainConfig | None = None,
    progress: Callable[[dict], None] | None = None,
) -> dict:
    """Train from scratch and write ``out``; return a summary (steps, wall time, last metrics)."""
    import os

    # Sleep instead of spinning when cores are shared (must precede the first torch import).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import torch.nn.functional as F

    from biomedvr_cli.sandbox.modelio import (
        UNSEEN_WORDS_SEED_OFFSET,
        create_model,
        draw_unseen_words,
        get_tokenizer,
        save_weights,
    )
    from biomedvr_cli.sandbox.properties import quick_alignment

    cfg = cfg or PretrainConfig()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = create_model()
    model.train()
    tokenizer = get_tokenizer()
    # Rows of words no caption contains never train; see draw_unseen_words.
    unseen_rows = draw_unseen_words(model, tokenizer, cfg.seed + UNSEEN_WORDS_SEED_OFFSET)
    # Per-family linear heads on the image embedding: a contrastive model alone sits at a
    # saddle for attributes neither tower separates yet (shape, texture); the heads make the
    # image tower see them, then the contrastive loss aligns the words. Not saved.
    from biomedvr_cli.sandbox.vocabulary import FAMILIES

    embed_dim = int(model.text_projection.shape[1])
    heads = torch.nn.ModuleList([torch.nn.Linear(embed_dim, len(v)) for v in FAMILIES.values()])
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n] + list(heads.parameters())
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    t0 = time.time()
    last_save = t0
    metrics: dict[str, Any] = {}
    step = 0
    stopped_by = "steps"

    def meta() -> dict:
        return {
            "format": "biomedvr-sandbox-weights",
            "config": asdict(cfg),
            "steps_done": step,
            "wall_seconds": round(time.time() - t0, 1),
            "stopped_by": stopped_by,
            "unseen_word_rows": {"count": unseen_rows, "seed": cfg.seed + UNSEEN_WORDS_SEED_OFFSET},
            "metrics": metrics,
            "command": f"biomedvr sandbox pretrain --out {out} --steps {cfg.steps} --minutes {cfg.minutes} --seed {cfg.seed}",
        }

    n_pairs = int(cfg.batch_size * cfg.hard_fraction) // 2
    for step, (x, tokens, attrs) in enumerate(_Batches(cfg)):
        frac = _progress(step, time.time() - t0, cfg)
        if frac >= 1.0:
            stopped_by = "minutes" if step < cfg.steps else "steps"
            break
        lr = _lr_at(step, frac, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        img, txt, scale = model(x, tokens)[:3]
        logits = scale * img @ txt.t()
        labels = torch.arange(len(x))
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
        if n_pairs and cfg.pair_weight:
            loss = loss + cfg.pair_weight * _pair_loss(img[: 2 * n_pairs], txt[: 2 * n_pairs], scale)
        if cfg.aux_weight:
            loss = loss + cfg.aux_weight * sum(
                F.cross_entropy(head(10.0 * img), attrs[:, j], ignore_index=-1) for j, head in enumerate(heads)
            ) / len(heads)
        if not torch.isfinite(loss):
            from biomedvr_cli.errors import TrainingError

            raise TrainingError(f"pretraining diverged at step {step}", "lower --lr or change --seed")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        elapsed = time.time() - t0
        info = {"step": step, "loss": float(loss.detach()), "lr": lr, "elapsed_s": round(elapsed, 1)}
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            model.eval()
            metrics = quick_alignment(model, tokenizer, seed=12345, n=400)
            model.train()
            info.update(metrics)
        if progress:
            progress(info)
        if time.time() - last_save >= cfg.save_every_minutes * 60:
            save_weights(model, out, meta())
            last_save = time.time()
    else:
        step = cfg.steps
    model.eval()
    metrics = quick_alignment(model, tokenizer, seed=12345, n=400)
    save_weights(model, out, meta())
    return meta()


def main(argv: list[str] | None = None) -> None:
    """``python -m biomedvr_cli.sandbox.pretrain``: JSON lines of progress on stdout."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    d = PretrainConfig()
    for f, v in asdict(d).items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    a = vars(p.parse_args(argv))
    out = a.pop("out")
    summary = pretrain(out, PretrainConfig(**a), progress=lambda i: print(json.dumps(i), flush=True))
    print(json.dumps({"done": True, **summary}), flush=True)


if __name__ == "__main__":
    main()

"""Shared pieces of the speed scripts: random-init backbones, a BioMedVR head without text, timers, FLOPs.

Nothing here downloads: models are open_clip architectures with random weights (speed
does not depend on the weights), text banks are random unit vectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from biomedvr_cli.method.augment import random_resized_crop
from biomedvr_cli.backbones.loader import Backbone
from biomedvr_cli.backbones.specs import BackboneSpec
from biomedvr_cli.method.head import BioMedVRHead, MethodConfig
from biomedvr_cli.method.losses import biomedvr_loss
from biomedvr_cli.method.textbanks import TextBank

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def random_backbone(model_name: str, device: torch.device | str = "cpu") -> Backbone:
    """An open_clip architecture with random weights, frozen, wrapped like a loaded backbone."""
    import logging

    import open_clip

    logging.getLogger().setLevel(logging.ERROR)  # "no pretrained weights loaded" is the point here
    torch.manual_seed(0)
    model = open_clip.create_model(model_name, pretrained=None).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.to(device)
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    return Backbone(spec=BackboneSpec(kind="tag", model=model_name, pretrained=None), model=model, tokenizer=None,
                    image_size=size, mean=OPENAI_MEAN, std=OPENAI_STD, logit_scale=100.0, fingerprint="random-init",
                    device=torch.device(device))


def random_head(backbone: Backbone, classes: int = 5, per_class: int = 5, config: MethodConfig | None = None) -> BioMedVRHead:
    """A BioMedVR head with random unit-vector sentence banks (no text tower needed)."""
    g = torch.Generator().manual_seed(0)
    dim = backbone.embed_dim
    banks = {}
    for name in ("descriptive", "distinctive", "confusion"):
        emb = F.normalize(torch.randn(classes * per_class, dim, generator=g), dim=-1)
        owner = torch.arange(classes).repeat_interleave(per_class)
        banks[name] = TextBank(emb, owner, [f"{name} {i}" for i in range(classes * per_class)])
    head = BioMedVRHead(config or MethodConfig(), classes, backbone.image_size, dim, backbone.logit_scale, banks)
    return head.to(backbone.device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@dataclass
class Timing:
    seconds_per_call: float
    calls: int


def time_calls(fn: Callable[[], object], device: torch.device, *, warmup: int, calls: int) -> Timing:
    """Median-free simple timing: warm up, then the mean over ``calls`` (synchronised on CUDA)."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return Timing((time.perf_counter() - start) / max(1, calls), calls)


def head_train_step(head: BioMedVRHead, backbone: Backbone, images01: torch.Tensor, labels: torch.Tensor,
                    optimizer: torch.optim.Optimizer, generator: torch.Generator, bf16: bool) -> Callable[[], None]:
    """One BioMedVR training step exactly as ``training.train_head`` does it (crop/flip, two views, CS loss)."""
    device = backbone.device

    def step() -> None:
        head.train()
        batch = random_resized_crop(images01, generator, scale=(0.25, 1.0), flip=True)
        with autocast(device, bf16):
            out = head(batch, backbone.encode_images)
            loss, _ = biomedvr_loss(out.fused.float(), None if out.negative is None else out.negative.float(), labels,
                                    beta=head.config.beta, margin=head.config.margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def bare_backward_step(backbone: Backbone, views01: torch.Tensor, bf16: bool) -> Callable[[], None]:
    """Frozen encoder forward + backward to the input for the same number of views (the floor for a VR step)."""
    device = backbone.device

    def step() -> None:
        x = views01.detach().requires_grad_(True)
        with autocast(device, bf16):
            feats = backbone.encode_images(x)
        feats.float().sum().backward()

    return step


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call, as counted by torch's dispatcher (a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())

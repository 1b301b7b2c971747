"""A cheap, stable fingerprint of a model's weights.

Hashing every byte of a ViT-B/16 takes seconds; hashing each tensor's name, shape and a
fixed strided sample of its values takes milliseconds and still tells two checkpoints
apart. It does not depend on the device or the file format, and fp32 weights and their
fp16 copy get the same fingerprint: samples are hashed as float16, and casting an fp32
value to float16 gives exactly the value its fp16 copy holds (both round to nearest even).
The activation is hashed too, so OpenAI weights built with GELU instead of QuickGELU (which
gives other features) do not pass for the real model.

Adapters written by biomedvr 0.1.0 recorded :func:`legacy_fingerprint` (float32 samples
rounded to 3 decimals, which 114 of 77,057 sampled values of an fp16 copy missed); they are
still accepted for the same weights.
"""

from __future__ import annotations

import hashlib

import torch

_SAMPLES_PER_TENSOR = 256


def _samples(model: torch.nn.Module):
    """(name, shape, float32 CPU sample) for every floating-point tensor, in name order."""
    for name, tensor in sorted(model.state_dict().items()):
        if not torch.is_tensor(tensor) or not tensor.is_floating_point():
            continue
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
        yield name, tuple(tensor.shape), flat[::step][:_SAMPLES_PER_TENSOR].to(device="cpu", dtype=torch.float32)


def _uses_quick_gelu(model: torch.nn.Module) -> bool:
    return any(type(module).__name__ == "QuickGELU" for module in model.modules())


@torch.no_grad()
def weights_fingerprint(model: torch.nn.Module) -> str:
    """Return ``sha256:<16 hex>`` identifying the model's parameters, buffers and activation."""
    digest = hashlib.sha256(b"biomedvr-fingerprint-v2")
    if _uses_quick_gelu(model):
        digest.update(b"quick_gelu")
    for name, shape, sample in _samples(model):
        digest.update(name.encode())
        digest.update(str(shape).encode())
        digest.update(sample.to(torch.float16).numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:16]


@torch.no_grad()
def legacy_fingerprint(model: torch.nn.Module) -> str:
    """The fingerprint biomedvr 0.1.0 recorded in adapters (weights only, rounded float32 samples)."""
    digest = hashlib.sha256()
    for name, shape, sample in _samples(model):
        sample = torch.round(sample * 1e3) / 1e3
        digest.update(name.encode())
        digest.update(str(shape).encode())
        digest.update(sample.numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:16]

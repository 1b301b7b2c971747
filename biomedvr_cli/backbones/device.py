"""Device choice: ``auto`` picks cuda, then mps, then cpu."""

from __future__ import annotations

import torch

from biomedvr_cli.errors import UsageError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name``; an unavailable explicit choice is a usage error."""
    name = name.lower()
    if name not in DEVICE_CHOICES:
        raise UsageError(f"unknown device {name!r}", f"use one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but CUDA is not available", "use --device auto or cpu (device= in Python)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps was asked for but MPS is not available", "use --device auto or cpu (device= in Python)")
    return torch.device(name)

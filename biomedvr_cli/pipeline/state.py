"""Library calls leave the process as they found it: random number generators and environment.

Training seeds torch's global generator so that a fit is repeatable in any process; a
notebook that called ``torch.manual_seed(1)`` must still get its own random stream after a
fit. Third-party imports set environment variables (open_clip sets TOKENIZERS_PARALLELISM
when first imported); a library call must not change ``os.environ`` either.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def preserved_rng(device: torch.device | None = None) -> Iterator[None]:
    """Restore torch's CPU generator (and the CUDA one of ``device``), Python's and numpy's on the way out."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device is not None and device.type == "cuda" else []
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@contextlib.contextmanager
def scoped_environ() -> Iterator[None]:
    """Undo every change to ``os.environ`` made inside (added, changed or removed variables)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in [n for n in os.environ if n not in saved]:
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


@contextlib.contextmanager
def float32_default() -> Iterator[None]:
    """Run with torch's default dtype float32, restored after: the backbone, the adapter's head and
    the images are float32, and a session set to float64 (``torch.set_default_dtype``) would
    otherwise mix the two and fail inside a layer. Changes nothing when it already is float32."""
    previous = torch.get_default_dtype()
    if previous == torch.float32:
        yield
        return
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)

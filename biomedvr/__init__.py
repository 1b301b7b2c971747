"""biomedvr from Python: adapt a frozen vision-language model to your classes in a few lines.

    import biomedvr
    predictor = biomedvr.fit("images/", shots=8)            # or [(PIL image or array, "label"), ...]
    predictor.classify(["scan.png"])                         # [{"melanoma": 0.81, "nevus": 0.12, ...}]
    predictor.save("derm.safetensors")
    predictor = biomedvr.load("derm.safetensors")

A thin layer over ``biomedvr_cli.pipeline`` (the library the ``biomedvr`` command runs).
Notices go to the ``biomedvr`` logger, cautions are raised as :class:`BiomedVRWarning`,
and every expected failure is a :class:`BiomedVRError` with ``.message``, ``.hint`` (the
fix) and ``.exit_code``. See docs/python-api.md.
"""

from __future__ import annotations

import logging
from typing import Any

from biomedvr._api import evaluate, fit, load, load_backbone
from biomedvr_cli import __version__
from biomedvr_cli.errors import (
    AdapterError,
    BackboneUnavailableError,
    BiomedVRError,
    InvalidInputError,
    OutputExistsError,
    OutputNotWritableError,
    ProviderError,
    TrainingError,
    UsageError,
)
from biomedvr_cli.pipeline.notices import LOGGER_NAME, BiomedVRWarning

# The library never configures logging; without a handler of the user's, notices stay silent.
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

__all__ = [
    "AdapterError",
    "Backbone",
    "BackboneUnavailableError",
    "BiomedVRError",
    "BiomedVRWarning",
    "FitResult",
    "InvalidInputError",
    "MethodConfig",
    "OutputExistsError",
    "OutputNotWritableError",
    "Predictor",
    "ProviderError",
    "TrainingError",
    "UsageError",
    "__version__",
    "evaluate",
    "fit",
    "load",
    "load_backbone",
]

# Classes whose modules import torch: loaded on first use, so that `import biomedvr` stays fast.
_LAZY = {
    "Predictor": "biomedvr_cli.pipeline.predictor",
    "FitResult": "biomedvr_cli.pipeline.fit",
    "Backbone": "biomedvr_cli.backbones.loader",
    "MethodConfig": "biomedvr_cli.method.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'biomedvr' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

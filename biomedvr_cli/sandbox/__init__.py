"""The sandbox: a procedural microscopy-like world, its captions, tasks and a tiny pretrained VLM.

Real pretrained weights cannot be downloaded here, so the project carries its own world
(``world.py`` + ``draw.py``), captions in that world's words (``captions.py``), downstream
tasks defined as data (``tasks/*.json``, ``tasks.py``), a reproducible contrastive
pretraining (``pretrain.py``) and the measurement of the shipped model's properties
(``properties.py``). Nothing here imports typer or rich, and nothing prints.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_DIR = PACKAGE_DIR / "model"
TASKS_DIR = PACKAGE_DIR / "tasks"
MODEL_NAME = "biomedvr-sandbox"
MODEL_CONFIG_PATH = MODEL_DIR / f"{MODEL_NAME}.json"
WEIGHTS_PATH = MODEL_DIR / "sandbox.safetensors"

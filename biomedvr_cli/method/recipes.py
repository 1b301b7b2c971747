"""Training recipes as data: JSON files in ``recipes/`` read into :class:`Recipe`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from biomedvr_cli.errors import UsageError

RECIPE_DIR = Path(__file__).with_name("recipes")
DEFAULT_RECIPE = "fast"
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class Recipe:
    """How the head is trained. ``eval_every`` sets how often validation selects a state."""

    name: str
    description: str = ""
    epochs: int = 100
    batch_size: int = 64
    batch_size_one_shot: int = 16
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 40.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip: bool = True
    eval_every: int = 1
    # Validation checks in a row without a better score before the VR stage stops (None: every epoch runs).
    patience: int | None = None

    def __post_init__(self) -> None:
        # A recipe comes from a shipped file, --epochs/--lr/--batch-size or a benchmark suite;
        # a bad value must stop here (exit 2), not as a traceback or a silently useless fit.
        _at_least("epochs", self.epochs, 1, "--epochs")
        _at_least("batch size", self.batch_size, 1, "--batch-size")
        _at_least("one-shot batch size", self.batch_size_one_shot, 1, "--batch-size")
        _at_least("warmup epochs", self.warmup_epochs, 0, "the recipe's warmup_epochs")
        _at_least("eval_every", self.eval_every, 1, "the recipe's eval_every")
        if self.patience is not None:
            _at_least("patience", self.patience, 1, "the recipe's patience")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{name} must be a number, got {value!r}", f"pass {name} as a number, e.g. "
                                 f"{_EXAMPLES[name]}")
        if not isinstance(self.optimizer, str) or not isinstance(self.flip, bool):
            raise UsageError(f"optimizer must be a name and flip true or false, got {self.optimizer!r} and "
                             f"{self.flip!r}", f"optimizer: one of {', '.join(OPTIMIZERS)}; flip: True or False")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"the learning rate must be a positive number, got {self.lr}", "pass --lr above 0, e.g. --lr 0.05")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise UsageError(f"momentum must be in [0, 1), got {self.momentum}", "fix the recipe's momentum")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"weight decay must be 0 or more, got {self.weight_decay}", "fix the recipe's weight_decay")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}", f"choose one of {', '.join(OPTIMIZERS)}")
        scale = self.crop_scale
        if (isinstance(scale, (str, bytes)) or not isinstance(scale, (tuple, list)) or len(scale) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in scale)):
            raise UsageError(f"crop_scale must be two numbers (low, high), got {scale!r}",
                             "pass e.g. crop_scale=(0.08, 1.0)")
        low, high = (float(v) for v in scale)
        if not 0 < low <= high <= 1:
            raise UsageError(f"crop_scale must satisfy 0 < low <= high <= 1, got {list(self.crop_scale)}",
                             "fix the recipe's crop_scale")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for adapters and reports."""
        data = asdict(self)
        data["crop_scale"] = list(self.crop_scale)
        return data

    def with_overrides(self, **overrides: Any) -> Recipe:
        """A copy with the non-None overrides applied (from CLI options); bad values raise UsageError.

        A batch size given alone caps the one-shot batch too (``--batch-size`` says one number: at
        1 shot the recipe's smaller one-shot batch would otherwise ignore a smaller one); the rule
        ``benchmark --batch-size`` has always used, so a benchmark cell is reproduced by ``fit``.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        known = {f.name for f in fields(self)} - {"name", "description"}
        unknown = sorted(set(given) - known)
        if unknown:
            raise UsageError(f"unknown recipe setting(s): {', '.join(unknown)}", f"use one of {', '.join(sorted(known))}")
        if "batch_size" in given and "batch_size_one_shot" not in given:
            given["batch_size_one_shot"] = min(given["batch_size"], self.batch_size_one_shot)
        return replace(self, **given)


_EXAMPLES = {"lr": "lr=0.05", "momentum": "momentum=0.9", "weight_decay": "weight_decay=0.0"}


def _at_least(what: str, value: int, low: int, option: str) -> None:
    """Refuse a count below ``low`` (or not a whole number); ``option`` is where the user sets it."""
    # bool is an int subclass; a float such as 2.5 from a JSON file is no count either.
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        fix = f"pass {option} {low} or more" if option.startswith("--") else f"fix {option}"
        raise UsageError(f"{what} must be a whole number of at least {low}, got {value!r}", fix)


def available_recipes() -> list[str]:
    """Names of the shipped recipes."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def load_recipe(name: str) -> Recipe:
    """A shipped recipe by name."""
    path = RECIPE_DIR / f"{name}.json"
    if not path.is_file():
        raise UsageError(f"unknown recipe {name!r}", f"choose one of {', '.join(available_recipes())}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    known = {f.name for f in fields(Recipe)}
    raw = {k: v for k, v in raw.items() if k in known}
    if "crop_scale" in raw:
        raw["crop_scale"] = tuple(raw["crop_scale"])
    return Recipe(**raw)

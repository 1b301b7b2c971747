"""Training recipes as data: JSON files in ``recipes/`` read into :class:`Recipe`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from biomedvr_cli.errors import UsageError

RECIPE_DIR = Path(__file__).with_name("recipes")
DEFAULT_RECIPE = "fast"


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

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for adapters and reports."""
        data = asdict(self)
        data["crop_scale"] = list(self.crop_scale)
        return data

    def with_overrides(self, **overrides: Any) -> Recipe:
        """A copy with the non-None overrides applied (from CLI options)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


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

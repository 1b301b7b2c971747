"""Backbone presets: JSON files in ``presets/``, read into dataclasses.

Presets are data so that adding a backbone means adding a file, not code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PRESET_DIR = Path(__file__).with_name("presets")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Preset:
    """A named backbone: an open_clip model name, a pretrained tag or shipped files."""

    name: str
    description: str
    model: str
    pretrained: str | None = None
    hf_repos: tuple[str, ...] = field(default_factory=tuple)
    config_file: str | None = None  # package-relative open_clip model config to register
    weights_file: str | None = None  # package-relative weights shipped with biomedvr

    @property
    def config_path(self) -> Path | None:
        """Absolute path of the shipped model config, if any."""
        return PACKAGE_ROOT / self.config_file if self.config_file else None

    @property
    def weights_path(self) -> Path | None:
        """Absolute path of the shipped weights, if any."""
        return PACKAGE_ROOT / self.weights_file if self.weights_file else None


@lru_cache(maxsize=1)
def load_presets() -> dict[str, Preset]:
    """All presets by name, in file-name order."""
    presets: dict[str, Preset] = {}
    for path in sorted(PRESET_DIR.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["hf_repos"] = tuple(raw.get("hf_repos", ()))
        preset = Preset(**raw)
        presets[preset.name] = preset
    return presets

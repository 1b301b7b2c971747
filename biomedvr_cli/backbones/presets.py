"""Backbone presets: JSON files in ``presets/``, read into dataclasses.

Presets are data so that adding a backbone means adding a file, not code. Each preset pins
the Hugging Face commit of every repo it downloads from (``revisions``): what a preset
loads never changes when a repo's ``main`` moves on, and the exact weights can always be
fetched again. ``docs/backbones.md`` says how a pin is checked and moved.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PRESET_DIR = Path(__file__).with_name("presets")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
#: A full git commit hash: what ``revisions`` must hold (a branch or tag name could move).
COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


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
    revisions: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (hub repo, commit) pairs

    @property
    def config_path(self) -> Path | None:
        """Absolute path of the shipped model config, if any."""
        return PACKAGE_ROOT / self.config_file if self.config_file else None

    @property
    def weights_path(self) -> Path | None:
        """Absolute path of the shipped weights, if any."""
        return PACKAGE_ROOT / self.weights_file if self.weights_file else None

    def revision_of(self, repo: str) -> str | None:
        """The pinned commit of ``repo``, or None when this preset does not pin it."""
        return dict(self.revisions).get(repo)


def _read(path: Path) -> Preset:
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["hf_repos"] = tuple(raw.get("hf_repos", ()))
    revisions = raw.get("revisions") or {}
    bad = {repo: rev for repo, rev in revisions.items() if not isinstance(rev, str) or not COMMIT_HASH.fullmatch(rev)}
    if bad or set(revisions) - set(raw["hf_repos"]):
        # Package data, not user input: a broken pin is a bug in this release.
        raise ValueError(f"preset {path.name}: revisions must pin repos of hf_repos to 40-hex commits, got {revisions}")
    raw["revisions"] = tuple(sorted(revisions.items()))
    return Preset(**raw)


@lru_cache(maxsize=1)
def load_presets() -> dict[str, Preset]:
    """All presets by name, in file-name order."""
    presets: dict[str, Preset] = {}
    for path in sorted(PRESET_DIR.glob("*.json")):
        preset = _read(path)
        presets[preset.name] = preset
    return presets


@lru_cache(maxsize=None)
def pinned_revision(repo: str) -> str | None:
    """The commit a preset pins for hub ``repo`` (whichever way the backbone was named), or None.

    A repo is pinned by repo name, so ``--backbone hf-hub:ORG/REPO`` or ``ViT-B-16:openai``
    load the same commit as the preset that uses that repo.
    """
    for preset in load_presets().values():
        revision = preset.revision_of(repo)
        if revision is not None:
            return revision
    return None

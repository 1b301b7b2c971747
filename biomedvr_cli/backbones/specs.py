"""Parse what the user passes to ``--backbone`` into a :class:`BackboneSpec`.

Accepted forms:
- a preset name (``biomedclip``, ``clip-vit-b16``, ``sandbox`` ...);
- ``hf-hub:ORG/REPO`` (an open_clip model on the Hugging Face hub);
- ``local-dir:PATH`` (a folder with ``open_clip_config.json`` and weights);
- ``MODEL:TAG`` (an open_clip model name and pretrained tag, e.g. ``ViT-B-16:openai``);
- ``MODEL:PATH`` (an open_clip model name and a local weights file; OpenAI weights are built
  with QuickGELU when they are recognisable as such, ``MODEL-quickgelu:PATH`` forces it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from biomedvr_cli.backbones.presets import Preset, load_presets
from biomedvr_cli.errors import UsageError


@dataclass(frozen=True)
class BackboneSpec:
    """A resolved backbone request. ``label`` is safe to persist (no paths)."""

    kind: str  # "preset" | "hf-hub" | "local-dir" | "tag" | "file"
    model: str
    pretrained: str | None = None
    preset: Preset | None = None
    local_path: Path | None = None

    @property
    def label(self) -> str:
        """A path-free name for logs and adapters."""
        if self.preset is not None:
            return self.preset.name
        if self.kind == "local-dir":
            return "local-dir"
        if self.kind == "file":
            return f"{self.model}:local-file"
        if self.kind == "tag":
            return f"{self.model}:{self.pretrained}"
        return self.model


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith((".pt", ".pth", ".bin", ".safetensors")) or Path(text).is_file()


def parse_backbone(text: str) -> BackboneSpec:
    """Turn a ``--backbone`` value into a spec; unknown forms raise a usage error."""
    text = text.strip()
    if not text:
        raise UsageError("empty --backbone", "pass a preset name such as biomedclip; `biomedvr backbones` lists them")
    presets = load_presets()
    if text in presets:
        preset = presets[text]
        return BackboneSpec(kind="preset", model=preset.model, pretrained=preset.pretrained, preset=preset)
    if text.startswith("hf-hub:"):
        return BackboneSpec(kind="hf-hub", model=text)
    if text.startswith("local-dir:"):
        folder = Path(text[len("local-dir:") :]).expanduser()
        return BackboneSpec(kind="local-dir", model=text, local_path=folder)
    if ":" in text:
        model, _, rest = text.partition(":")
        if not model or not rest:
            raise UsageError(f"cannot read --backbone {text!r}", "use MODEL:TAG, e.g. ViT-B-16:openai")
        if _looks_like_path(rest):
            return BackboneSpec(kind="file", model=model, local_path=Path(rest).expanduser())
        return BackboneSpec(kind="tag", model=model, pretrained=rest)
    raise UsageError(
        f"unknown backbone {text!r}",
        "use a preset (`biomedvr backbones` lists them), hf-hub:ORG/REPO, local-dir:PATH, MODEL:TAG or MODEL:WEIGHTS_FILE",
    )

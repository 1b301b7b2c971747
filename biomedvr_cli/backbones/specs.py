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

import re
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


def _looks_like_path(text: str, probe_files: bool = True) -> bool:
    return "/" in text or "\\" in text or text.endswith((".pt", ".pth", ".bin", ".safetensors")) or (
        probe_files and Path(text).is_file())


def stored_label_problem(label: str) -> str | None:
    """Why ``label`` cannot be what fit stores as an adapter's backbone (a preset, ``hf-hub:ORG/REPO``,
    ``MODEL:TAG``, or the path-free ``local-dir`` and ``MODEL:local-file``), else None. An adapter is
    a shared file: a label naming a path would make ``predict`` load weights from there."""
    if label == "local-dir":
        return None
    if label.startswith("hf-hub:"):
        return None if _HUB_LABEL.fullmatch(label) and ".." not in label else "is not a hub backbone name"
    model, colon, rest = label.partition(":")
    if (label.startswith("local-dir:") or _looks_like_path_text(model)
            or (colon and rest != "local-file" and _looks_like_path_text(rest))):
        return "names a file or folder; an adapter never stores a backbone's path"
    if colon and rest == "local-file":
        return None if model.strip() else "is not a backbone name"
    try:
        spec = parse_backbone(label, probe_files=False)
    except UsageError:
        return "is not a backbone name"
    return None if spec.label == label else "is not a backbone name"


_HUB_LABEL = re.compile(r"hf-hub:[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def _looks_like_path_text(text: str) -> bool:
    """A path by its spelling alone (the filesystem is not asked: a stored label is no local request)."""
    return "/" in text or "\\" in text or text.startswith("~") or text.endswith((".pt", ".pth", ".bin", ".safetensors"))


def parse_backbone(text: str, *, probe_files: bool = True) -> BackboneSpec:
    """Turn a ``--backbone`` value into a spec; unknown forms raise a usage error.

    ``MODEL:X`` names a weights file when X is spelt like a path, or (``probe_files``) when a file X
    exists; an adapter's stored label is parsed without the probe, so that a file in the current
    folder named like a tag (``openai``) is never taken for the weights."""
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
        if _looks_like_path(rest, probe_files):
            return BackboneSpec(kind="file", model=model, local_path=Path(rest).expanduser())
        return BackboneSpec(kind="tag", model=model, pretrained=rest)
    raise UsageError(
        f"unknown backbone {text!r}",
        "use a preset (`biomedvr backbones` lists them), hf-hub:ORG/REPO, local-dir:PATH, MODEL:TAG or MODEL:WEIGHTS_FILE",
    )

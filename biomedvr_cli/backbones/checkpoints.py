"""Checkpoint formats open_clip does not handle for us: OpenAI TorchScript archives, and
recognising OpenAI weights (which need QuickGELU) when they come as a bare file.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

# Attributes OpenAI's TorchScript CLIP keeps as tensors; they are not weights.
_JIT_NON_WEIGHTS = ("input_resolution", "context_length", "vocab_size")


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (a zip with compiled ``code/`` and ``constants.pkl``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def torchscript_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an OpenAI TorchScript CLIP archive (``~/.cache/clip/ViT-B-16.pt``).

    torch.load refuses TorchScript with weights_only=True, so this uses torch.jit.load: its
    C++ loader rebuilds TorchScript modules only (it cannot construct arbitrary Python objects
    as pickle can), and we run none of the archive's code, only read its tensors. Callers check
    :func:`is_torchscript` first.
    """
    archive = torch.jit.load(str(path), map_location="cpu")
    return {k: v.detach().clone() for k, v in archive.state_dict().items() if k not in _JIT_NON_WEIGHTS}


def openai_release(model_name: str) -> dict:
    """open_clip's ``openai`` pretrained entry for this architecture (empty when OpenAI released none)."""
    import open_clip

    if model_name.endswith("-quickgelu"):
        return {}
    return open_clip.get_pretrained_cfg(model_name, "openai") or {}


def looks_like_openai(model_name: str, path: Path) -> bool:
    """Whether a ``MODEL:WEIGHTS`` file holds OpenAI's weights for MODEL, which were trained with QuickGELU.

    The weights alone do not say which activation they were trained with, so we go by what we
    can see: a TorchScript archive (only OpenAI ships CLIP that way), OpenAI's own file name
    (``ViT-B-16.pt``), a file inside the Hugging Face cache folder of open_clip's ``openai`` tag
    (``models--timm--vit_base_patch16_clip_224.openai``), or "openai" in the file or folder name.
    Anything else can force QuickGELU by naming the ``MODEL-quickgelu`` architecture.
    """
    release = openai_release(model_name)
    if not release.get("quick_gelu"):
        return False
    if is_torchscript(path):
        return True
    url_name = os.path.basename(release.get("url", ""))
    hub_repo = release.get("hf_hub", "").strip("/").split("/")
    hub_folder = "models--" + "--".join(hub_repo[:2]) if len(hub_repo) >= 2 else None
    resolved = str(path.resolve())
    return (bool(url_name) and path.name == url_name) or (hub_folder is not None and hub_folder in resolved) \
        or "openai" in path.name.lower() or "openai" in path.parent.name.lower()


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an OpenAI-layout state dict (open_clip's CLIP uses the same names), strictly.

    A scripted module also lists its non-persistent buffers (open_clip's ``attn_mask``); the
    model rebuilds those itself, so they are dropped; any other difference is an error.
    """
    persistent = set(model.state_dict())
    rebuilt = {name for name, _ in model.named_buffers()} - persistent
    state = {k: v for k, v in state.items() if k not in rebuilt}
    if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    model.load_state_dict(state, strict=True)

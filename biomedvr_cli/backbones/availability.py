"""Where a backbone's files are on this machine, found without any network call.

Before open_clip is asked to load anything, we look in the Hugging Face cache and in the
OpenAI/open_clip URL cache (``~/.cache/clip``) ourselves. What is missing comes back as
:class:`HubNeed` entries, which ``downloads`` fetches on first use, or which become the exact
``hf download`` commands when downloads are off.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from biomedvr_cli.backbones.downloads import HubNeed
from biomedvr_cli.backbones.specs import BackboneSpec
from biomedvr_cli.errors import BackboneUnavailableError

HF_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# What an HF text tower needs besides the CLIP checkpoint: its config and tokenizer files
# (never its own weights: the open_clip checkpoint holds the trained text tower).
TEXT_CONFIG_FILES = ("config.json",)
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
TEXT_FILES = TEXT_CONFIG_FILES + TOKENIZER_FILES


@dataclass(frozen=True)
class Availability:
    """Whether the files are local, where the weights are, and what a download would fetch."""

    available: bool
    checkpoint: Path | None = None  # a local weights file, when one was resolved
    missing: tuple[str, ...] = ()  # Hugging Face repos (or URLs) that are not cached
    needs: tuple[HubNeed, ...] = ()  # what to download from the hub


def openai_cache_dir() -> Path:
    """Where OpenAI's ``clip`` package and older open_clip put ``ViT-B-16.pt`` and friends."""
    return Path(os.path.expanduser("~/.cache/clip"))


def hf_cached(repo: str, filename: str) -> Path | None:
    """The cached file of ``repo`` (at the commit a preset pins, else ``main``), or None; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    from biomedvr_cli.backbones.presets import pinned_revision

    found = try_to_load_from_cache(repo_id=repo, filename=filename, revision=pinned_revision(repo))
    return Path(found) if isinstance(found, str) else None


def text_tower_names(model_cfg: dict) -> tuple[str | None, str | None]:
    """(``hf_model_name``, ``hf_tokenizer_name``) of an open_clip model config, when it has an HF text tower."""
    text_cfg = model_cfg.get("text_cfg", {}) or {}
    return text_cfg.get("hf_model_name") or None, text_cfg.get("hf_tokenizer_name") or None


def read_model_cfg(config_file: Path) -> dict:
    """The ``model_cfg`` part of an ``open_clip_config.json`` (or the whole file if it has none)."""
    raw = json.loads(config_file.read_text(encoding="utf-8"))
    return raw.get("model_cfg", raw)


def text_needs(model_cfg: dict, local_base: Path | None = None) -> list[HubNeed]:
    """Hub repos the text tower needs that are not cached (names that are folders under ``local_base`` are local)."""
    model_name, tokenizer_name = text_tower_names(model_cfg)
    needs: dict[str, HubNeed] = {}
    for name, files in ((model_name, TEXT_CONFIG_FILES), (tokenizer_name, TOKENIZER_FILES)):
        if not name or (local_base is not None and (local_base / name).is_dir()) or Path(name).is_absolute():
            continue
        if files is TEXT_CONFIG_FILES and hf_cached(name, "config.json"):
            continue
        if files is TOKENIZER_FILES and any(hf_cached(name, f) for f in ("tokenizer_config.json", "tokenizer.json", "vocab.txt")):
            continue
        needs[name] = HubNeed(name, optional=TEXT_FILES)
    return list(needs.values())


def check_hf_hub(spec: BackboneSpec, extra_repos: tuple[str, ...] = ()) -> Availability:
    """An ``hf-hub:`` open_clip model: its config, weights and any text-tower repo must be cached."""
    repo = spec.model[len("hf-hub:") :]
    config = hf_cached(repo, "open_clip_config.json")
    weights = next((p for p in (hf_cached(repo, n) for n in HF_WEIGHT_NAMES) if p), None)
    if config is None or weights is None:
        repos = [repo, *[r for r in extra_repos if r != repo and not hf_cached(r, "config.json")]]
        need = HubNeed(repo, required=("open_clip_config.json",), one_of=HF_WEIGHT_NAMES)
        return Availability(False, missing=tuple(repos), needs=(need,))
    needs = text_needs(read_model_cfg(config))
    if needs:
        return Availability(False, missing=tuple(n.repo for n in needs), needs=tuple(needs))
    return Availability(True, checkpoint=weights)


def _tag_hub_files(hf_hub: str) -> tuple[str, tuple[str, ...]]:
    """open_clip's ``hf_hub`` entry (``org/repo/`` or ``org/repo/file``) as (repo, candidate files)."""
    repo, filename = os.path.split(hf_hub) if not hf_hub.endswith("/") else (hf_hub.rstrip("/"), "")
    if not filename:
        return repo, HF_WEIGHT_NAMES
    safe = filename.rsplit(".", 1)[0] + ".safetensors"
    return repo, (safe, filename) if safe != filename else (filename,)


def check_tag(model: str, tag: str) -> Availability:
    """An open_clip ``MODEL:TAG``: look in the HF cache, then in ``~/.cache/clip``."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        raise BackboneUnavailableError(f"`{model}:{tag}` is not an open_clip pretrained tag",
                                       f"see open_clip.list_pretrained(); tags of {model}: "
                                       f"{', '.join(open_clip.list_pretrained_tags_by_model(model)) or 'none'}")
    needs: list[HubNeed] = []
    if cfg.get("hf_hub"):
        repo, names = _tag_hub_files(cfg["hf_hub"])
        for name in names:
            found = hf_cached(repo, name)
            if found:
                return Availability(True, checkpoint=found)
        needs.append(HubNeed(repo, one_of=names))
    url = cfg.get("url", "")
    if url:
        cached = openai_cache_dir() / os.path.basename(url)
        if cached.is_file():
            return Availability(True, checkpoint=cached)
    return Availability(False, missing=tuple(n.repo for n in needs) or (url,), needs=tuple(needs))

"""Where a backbone's weights are on this machine, found without any network call.

Offline first: before open_clip is asked to load anything, we look in the Hugging Face
cache and open_clip's URL cache ourselves, so a missing model fails in milliseconds
with the exact command to fetch it, instead of hanging on a blocked network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from biomedvr_cli.backbones.specs import BackboneSpec

_HF_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class Availability:
    """Whether the weights are local, where, and how to fetch them if not."""

    available: bool
    checkpoint: Path | None = None  # a local weights file, when one was resolved
    missing: tuple[str, ...] = ()  # Hugging Face repos (or URLs) that are not cached
    fetch_hint: str = ""


def _hf_cached(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id=repo, filename=filename)
    return Path(found) if isinstance(found, str) else None


def _hf_fetch_hint(repos: list[str]) -> str:
    fetch = " && ".join(f"hf download {repo}" for repo in repos)
    return (
        f"on a connected machine run `pip install huggingface_hub && {fetch}`, then copy the Hugging Face cache "
        "(~/.cache/huggingface) here or set HF_HOME to a copy; or pass --backbone local-dir:FOLDER with "
        "open_clip_config.json and weights; or allow a download with --allow-download (BIOMEDVR_ALLOW_DOWNLOAD=1)"
    )


def _text_tower_repos(config_file: Path) -> list[str]:
    """Hugging Face repos an open_clip config needs for its text tower and tokenizer."""
    import json

    cfg = json.loads(config_file.read_text(encoding="utf-8"))
    text_cfg = cfg.get("model_cfg", cfg).get("text_cfg", {})
    return sorted({name for name in (text_cfg.get("hf_model_name"), text_cfg.get("hf_tokenizer_name")) if name})


def _hf_repo_cached(repo: str) -> bool:
    return any(_hf_cached(repo, name) for name in ("config.json", "tokenizer_config.json", "vocab.txt"))


def check_hf_hub(spec: BackboneSpec, extra_repos: tuple[str, ...] = ()) -> Availability:
    """An ``hf-hub:`` open_clip model: its config, weights and any text-tower repo must be cached."""
    repo = spec.model[len("hf-hub:") :]
    repos = [repo, *[r for r in extra_repos if r != repo]]
    config = _hf_cached(repo, "open_clip_config.json")
    weights = next((p for p in (_hf_cached(repo, n) for n in _HF_WEIGHT_NAMES) if p), None)
    if config is None or weights is None:
        return Availability(False, missing=tuple(repos), fetch_hint=_hf_fetch_hint(repos))
    missing = [r for r in _text_tower_repos(config) if not _hf_repo_cached(r)]
    if missing:
        return Availability(False, missing=tuple(missing), fetch_hint=_hf_fetch_hint(missing))
    return Availability(True, checkpoint=weights)


def check_tag(model: str, tag: str) -> Availability:
    """An open_clip ``MODEL:TAG``: look in the HF cache, then open_clip's URL cache."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        return Availability(False, fetch_hint=f"`{model}:{tag}` is not an open_clip pretrained tag; see open_clip.list_pretrained()")
    hf_hub = cfg.get("hf_hub", "")
    repos: list[str] = []
    if hf_hub:
        repo, filename = os.path.split(hf_hub.rstrip("/")) if not hf_hub.endswith("/") else (hf_hub.rstrip("/"), "")
        names = (filename,) if filename else _HF_WEIGHT_NAMES
        for name in names:
            found = _hf_cached(repo, name)
            if found:
                return Availability(True, checkpoint=found)
        repos.append(repo)
    url = cfg.get("url", "")
    if url:
        cached = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if cached.is_file():
            return Availability(True, checkpoint=cached)
    return Availability(False, missing=tuple(repos or [url]), fetch_hint=_hf_fetch_hint(repos) if repos else
                        f"download {url} on a connected machine into ~/.cache/clip/, or pass --backbone {model}:PATH_TO_WEIGHTS")

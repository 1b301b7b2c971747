"""Which hub commit a backbone's weights come from, and loading a pinned repo from that commit.

open_clip's ``hf-hub:ORG/REPO`` always reads the cache's ``main``; a pinned repo is
downloaded at its commit (``downloads``) and found there (``availability.hf_cached``), so it
is built from that commit's snapshot folder like a ``local-dir`` folder, with its text
tower read from the pinned snapshots of the text repos too. Nothing here uses the network.
"""

from __future__ import annotations

import json
from pathlib import Path

from biomedvr_cli.backbones.availability import check_tag, hf_cached, read_model_cfg, text_tower_names
from biomedvr_cli.backbones.localdir import CONFIG_FILE, LocalDir, read_local_dir
from biomedvr_cli.backbones.presets import COMMIT_HASH, pinned_revision
from biomedvr_cli.backbones.specs import BackboneSpec
from biomedvr_cli.errors import BiomedVRError

#: The export manifest key that carries the revision (``biomedvr backbones export``).
MANIFEST_KEY = "revision"
_EXPORT_MANIFEST = "biomedvr-export.json"
_TOKENIZER_PROBES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt")
_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def snapshot_revision(path: Path | None) -> str | None:
    """The commit of a file in the Hugging Face cache (``.../snapshots/<commit>/file``), else None."""
    if path is None:
        return None
    for parent, child in zip(Path(path).parents, (Path(path), *Path(path).parents)):
        if parent.name == "snapshots" and COMMIT_HASH.fullmatch(child.name):
            return child.name
    return None


def _snapshot_folder(repo: str | None, probes: tuple[str, ...]) -> str | None:
    """The cached snapshot folder (at the pinned commit, if any) holding one of ``probes`` of hub ``repo``."""
    if not repo or Path(repo).is_absolute():
        return None
    found = next((p for p in (hf_cached(repo, name) for name in probes) if p is not None), None)
    return str(found.parent) if found is not None else None


def pinned_local_dir(repo: str) -> LocalDir | None:
    """A pinned, cached ``hf-hub`` repo as a local-dir folder (its snapshot), text tower resolved; None if not pinned."""
    if pinned_revision(repo) is None:
        return None
    config = hf_cached(repo, CONFIG_FILE)
    if config is None:
        return None
    local = read_local_dir(config.parent)
    model_name, tokenizer_name = text_tower_names(read_model_cfg(config))
    # Exactly what open_clip's hf-hub: route reads: the text repos named in the config, at their pinned commits.
    local.text_model = _snapshot_folder(model_name, ("config.json",)) or local.text_model
    local.text_tokenizer = _snapshot_folder(tokenizer_name, _TOKENIZER_PROBES) or local.text_tokenizer
    return local


def _export_revision(folder: Path | None) -> str | None:
    """The revision an exported folder's manifest records (None for other folders or a manifest without one)."""
    try:
        manifest = json.loads((Path(folder or "") / _EXPORT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = manifest.get(MANIFEST_KEY) if isinstance(manifest, dict) else None
    return value if isinstance(value, str) and COMMIT_HASH.fullmatch(value) else None


def weights_revision(spec: BackboneSpec) -> str | None:
    """The hub commit the weights of ``spec`` are read from on this machine, or None (shipped or local files).

    Read from where the weights sit in the Hugging Face cache, so it is the commit actually
    loaded: a pinned preset's, or ``main``'s for an unpinned repo; an exported folder
    carries the revision of the backbone it was exported from. OpenAI's own ``.pt`` files
    (``~/.cache/clip``) have none.
    """
    if spec.preset is not None and spec.preset.weights_path is not None:
        return None  # shipped with biomedvr: the package version pins them
    if spec.kind == "local-dir":
        return _export_revision(spec.local_path)
    if spec.kind == "file":
        return snapshot_revision(spec.local_path)
    if spec.model.startswith("hf-hub:"):
        repo = spec.model[len("hf-hub:"):]
        return next((r for r in (snapshot_revision(hf_cached(repo, n)) for n in _WEIGHT_NAMES) if r), None)
    if spec.pretrained:
        try:
            return snapshot_revision(check_tag(spec.model, spec.pretrained).checkpoint)
        except BiomedVRError:
            return None
    return None

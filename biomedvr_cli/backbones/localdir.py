"""``local-dir:FOLDER`` backbones: an open_clip config and weights in a folder, self-contained when exported.

open_clip's own ``local-dir:`` reads the config and weights from the folder but builds an
HF text tower with ``AutoConfig.from_pretrained(<hub name>)``, which needs the Hugging Face
cache or a network. Here a text-tower or tokenizer name that is a folder inside FOLDER (as
``biomedvr backbones export`` writes them: ``./text``) is resolved against FOLDER, so a copied
folder works on a machine with an empty cache and no network. Hub names still work when the
cache has them (or a download is allowed).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from biomedvr_cli.backbones.availability import text_needs, text_tower_names
from biomedvr_cli.backbones.downloads import HubNeed
from biomedvr_cli.backbones.model_config import check_model_sizes
from biomedvr_cli.backbones.manifest import MANIFEST_FILE, MANIFEST_FORMAT, SUMS_FILE, verify_export
from biomedvr_cli.data.files import read_regular_file
from biomedvr_cli.errors import BackboneUnavailableError, InvalidInputError

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
_MAX_JSON_BYTES = 16 * 1024 * 1024  # a config or manifest is a few KB
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
_ROOT_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt")


@dataclass
class LocalDir:
    """A local-dir backbone folder as read (and checked against its manifest, when it has one)."""

    folder: Path
    model_cfg: dict
    preprocess_cfg: dict
    manifest: dict | None = None
    text_model: str | None = None  # an absolute folder, or a hub name
    text_tokenizer: str | None = None  # an absolute folder (FOLDER itself for root files), or a hub name
    needs: list[HubNeed] = field(default_factory=list)


def unverified_notice(local: LocalDir | None) -> str | None:
    """The notice for a folder without a manifest (assembled by hand, which is allowed): nothing checks
    its files against a record, so an edited weights file loads without a word otherwise."""
    if local is None or local.manifest is not None:
        return None
    return (f"local-dir:{local.folder.name} has no {MANIFEST_FILE}, so its files are loaded unverified "
            "(`biomedvr backbones export` writes a folder with checksums)")


def _fail(message: str, hint: str) -> BackboneUnavailableError:
    return BackboneUnavailableError(message, hint)


def _resolve(folder: Path, name: str | None) -> str | None:
    if not name:
        return None
    local = folder / name
    return str(local.resolve()) if not Path(name).is_absolute() and local.is_dir() else name


def check_manifest(folder: Path, manifest: dict) -> None:
    """Check the folder against its export manifest: every file listed, inside the folder, of its size and SHA-256.

    Runs on every load (no cache), so an edit that keeps a file's size and time is still caught.
    """
    verify_export(folder, manifest)


def _read_json(path: Path) -> dict:
    try:  # a regular file of bounded size: a FIFO or /dev/zero named like the config is refused, not read
        data = json.loads(read_regular_file(path, max_bytes=_MAX_JSON_BYTES, what="JSON file").decode("utf-8"))
    except InvalidInputError as exc:
        raise _fail(f"cannot read {path.name} in the local-dir backbone folder ({exc.message})",
                    "point local-dir: at a folder written by `biomedvr backbones export` or an open_clip model repo") \
            from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _fail(f"cannot read {path.name} in the local-dir backbone folder ({str(exc).splitlines()[0][:120]})",
                    "point local-dir: at a folder written by `biomedvr backbones export` or an open_clip model repo") \
            from None
    if not isinstance(data, dict):
        raise _fail(f"{path.name} in the local-dir backbone folder is not a JSON object",
                    "point local-dir: at a folder written by `biomedvr backbones export` or an open_clip model repo")
    return data


def read_local_dir(folder: Path) -> LocalDir:
    """Read and check a local-dir folder; raises BackboneUnavailableError (exit 4) with the fix."""
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.is_file() else "is not a folder" if folder.exists() else "does not exist"
        raise _fail(f"local-dir backbone folder {folder} {what}", "check the path after local-dir: (a folder); a "
                    "weights file alone is passed as MODEL:FILE, e.g. ViT-B-16:weights.safetensors")
    # The manifest first: a changed file is reported as changed, before anything reads it.
    manifest_path = folder / MANIFEST_FILE
    if os.path.lexists(manifest_path) and not manifest_path.resolve().is_relative_to(folder.resolve()):
        # The manifest vouches for the folder's files; one that lives elsewhere vouches for nothing here.
        raise _fail(f"{MANIFEST_FILE} in the exported backbone folder is a link to a file outside the folder",
                    "copy the whole folder (links resolved, e.g. cp -rL), or export the backbone again with "
                    "`biomedvr backbones export`")
    manifest = _read_json(manifest_path) if os.path.lexists(manifest_path) else None
    if manifest is not None:
        check_manifest(folder, manifest)
    elif os.path.lexists(folder / SUMS_FILE):  # an export whose manifest was removed: nothing to verify against
        raise _fail(f"the exported backbone folder has {SUMS_FILE} but no {MANIFEST_FILE}",
                    "copy the whole folder again, or export the backbone again with `biomedvr backbones export`")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise _fail("the local-dir backbone folder has no open_clip_config.json",
                    "point local-dir: at a folder holding open_clip_config.json and the weights file "
                    "(`biomedvr backbones export NAME DIR` writes one)")
    raw = _read_json(config_path)
    model_cfg = raw.get("model_cfg")
    if not isinstance(model_cfg, dict) or "vision_cfg" not in model_cfg or "text_cfg" not in model_cfg:
        raise _fail("open_clip_config.json in the local-dir folder has no model_cfg with vision_cfg and text_cfg",
                    "use the open_clip_config.json of an open_clip model repo, or re-export the backbone")
    check_model_sizes(model_cfg, CONFIG_FILE)  # before open_clip reads them ("image_size": "big" fails deep inside it)
    if not any(p.suffix in _WEIGHT_SUFFIXES and p.is_file() for p in folder.iterdir()):
        raise _fail("the local-dir backbone folder has no weights file",
                    "put open_clip_model.safetensors (or open_clip_pytorch_model.bin) beside open_clip_config.json")
    model_name, tokenizer_name = text_tower_names(model_cfg)
    text_tokenizer = _resolve(folder, tokenizer_name)
    needed_cfg = model_cfg
    if tokenizer_name and text_tokenizer == tokenizer_name and _has_root_tokenizer(folder):
        # open_clip's convention for local-dir: tokenizer files beside the config win over the hub name.
        text_tokenizer = str(folder.resolve())
        needed_cfg = {**model_cfg, "text_cfg": {**model_cfg["text_cfg"], "hf_tokenizer_name": None}}
    needs = text_needs(needed_cfg, local_base=folder)
    return LocalDir(folder, model_cfg, raw.get("preprocess_cfg") or {}, manifest,
                    _resolve(folder, model_name), text_tokenizer, needs)


def _has_root_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _ROOT_TOKENIZER_FILES)


def text_cfg_override(local: LocalDir) -> dict | None:
    """The text config with local folders resolved, for ``create_model(..., text_cfg=...)``; None without an HF tower."""
    if not local.text_model:
        return None
    text_cfg = dict(local.model_cfg["text_cfg"])
    text_cfg["hf_model_name"] = local.text_model
    if local.text_tokenizer:
        text_cfg["hf_tokenizer_name"] = local.text_tokenizer
    # The folder's checkpoint holds the trained text tower; never fetch the base model's weights.
    text_cfg["hf_model_pretrained"] = False
    return text_cfg


def local_tokenizer(local: LocalDir):
    """The tokenizer for a local-dir model: the resolved HF tokenizer, else open_clip's choice."""
    import open_clip

    text_cfg = local.model_cfg.get("text_cfg", {})
    if local.text_tokenizer:
        from open_clip.tokenizer import DEFAULT_CONTEXT_LENGTH, HFTokenizer

        return HFTokenizer(local.text_tokenizer, context_length=text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH),
                           tokenizer_mode=text_cfg.get("tokenizer_mode"), **text_cfg.get("tokenizer_kwargs", {}))
    return open_clip.get_tokenizer(f"local-dir:{local.folder}")


__all__ = ["CONFIG_FILE", "LocalDir", "MANIFEST_FILE", "MANIFEST_FORMAT", "SUMS_FILE", "WEIGHTS_FILE",
           "check_manifest", "local_tokenizer", "read_local_dir", "text_cfg_override"]

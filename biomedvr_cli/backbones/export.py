"""``biomedvr backbones export NAME DIR``: a self-contained backbone folder for air-gapped machines.

Export on a connected machine, copy the folder, and pass ``--backbone local-dir:DIR`` on a
machine with an empty Hugging Face cache and no network. The folder holds:

- ``open_clip_config.json``: the model config, its HF text tower and tokenizer pointing at
  ``./text`` (and ``./tokenizer`` when they come from different repos), and the preprocessing;
- ``open_clip_model.safetensors``: every weight of the model, as loaded (fp32 stays fp32);
- ``text/`` (``tokenizer/``): the text tower's ``config.json`` and tokenizer files;
- ``biomedvr-export.json``: source, fingerprint, and each file's size and SHA-256;
- ``SHA256SUMS``: the same checksums for ``sha256sum -c SHA256SUMS``.

The folder is written beside DIR under a temporary name, loaded back offline and compared
by fingerprint, then renamed into place, so an interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biomedvr_cli import __version__
from biomedvr_cli.atomic import check_folder_writable
from biomedvr_cli.backbones.availability import TOKENIZER_FILES, hf_cached, text_tower_names
from biomedvr_cli.backbones.downloads import DownloadReporter
from biomedvr_cli.backbones.loader import Backbone, load_backbone
from biomedvr_cli.backbones.localdir import CONFIG_FILE, WEIGHTS_FILE, read_local_dir
from biomedvr_cli.backbones.manifest import MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, SUMS_FILE, sha256_file
from biomedvr_cli.backbones.manifest import manifest_entries, unlisted_files
from biomedvr_cli.backbones.specs import BackboneSpec, parse_backbone
from biomedvr_cli.errors import (
    BackboneUnavailableError,
    BiomedVRError,
    OutputExistsError,
    OutputNotWritableError,
    OutputWriteError,
    UsageError,
)

TEXT_DIR = "text"
TOKENIZER_DIR = "tokenizer"
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")


@dataclass
class ExportResult:
    """What ``export_backbone`` wrote."""

    folder: Path
    source: str
    fingerprint: str
    files: dict[str, int]  # relative name -> bytes

    @property
    def total_bytes(self) -> int:
        """Size of the whole folder."""
        return sum(self.files.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {"folder": str(self.folder), "source": self.source, "fingerprint": self.fingerprint,
                "files": self.files, "bytes": self.total_bytes, "backbone": f"local-dir:{self.folder}"}


def _source_files(name: str | None, wanted: tuple[str, ...]) -> dict[str, Path]:
    """Files of a text tower or tokenizer: from a local folder, else from the Hugging Face cache."""
    if not name:
        return {}
    folder = Path(name)
    if folder.is_dir():
        return {f: folder / f for f in wanted if (folder / f).is_file()}
    found = {f: hf_cached(name, f) for f in wanted}
    return {f: p for f, p in found.items() if p is not None}


def _text_sources(spec: BackboneSpec, backbone: Backbone) -> tuple[str | None, str | None]:
    """Where the text tower's config and the tokenizer come from: local folders or hub names."""
    if spec.kind == "local-dir":
        assert spec.local_path is not None
        local = read_local_dir(spec.local_path)
        return local.text_model, local.text_tokenizer
    return text_tower_names(backbone.model_cfg)


def _copy_text_tower(spec: BackboneSpec, backbone: Backbone, staging: Path) -> dict[str, str]:
    """Copy the text config and tokenizer files; returns the config's new relative names."""
    model_src, tokenizer_src = _text_sources(spec, backbone)
    names: dict[str, str] = {}
    if model_src:
        files = _source_files(model_src, ("config.json",))
        if "config.json" not in files:
            raise BackboneUnavailableError(f"the text tower config of {spec.label!r} is not on this machine",
                                           f"load the backbone once (e.g. `biomedvr backbones export {spec.label} DIR` "
                                           "with downloads on), then export again")
        _copy_into(files, staging / TEXT_DIR)
        names["hf_model_name"] = f"./{TEXT_DIR}"
    if tokenizer_src:
        target = TEXT_DIR if tokenizer_src == model_src or not model_src else TOKENIZER_DIR
        files = _source_files(tokenizer_src, TOKENIZER_FILES)
        if not files:
            raise BackboneUnavailableError(f"the tokenizer files of {spec.label!r} are not on this machine",
                                           "load the backbone once with downloads on, then export again")
        _copy_into(files, staging / target)
        names["hf_tokenizer_name"] = f"./{target}"
    return names


def _copy_into(files: dict[str, Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        shutil.copyfile(path, folder / name)  # follows the cache's symlinks: the copy holds the bytes


def _config_document(backbone: Backbone, text_names: dict[str, str]) -> dict[str, Any]:
    model_cfg = copy.deepcopy(backbone.model_cfg)
    text_cfg = model_cfg.setdefault("text_cfg", {})
    text_cfg.update(text_names)
    text_cfg.pop("hf_model_pretrained", None)
    if "timm_model_pretrained" in model_cfg.get("vision_cfg", {}):
        model_cfg["vision_cfg"]["timm_model_pretrained"] = False  # the checkpoint has the weights
    preprocess = getattr(backbone.model.visual, "preprocess_cfg", {}) or {}
    kept = {k: list(v) if isinstance(v, tuple) else v for k, v in preprocess.items() if k in _PREPROCESS_KEYS}
    return {"model_cfg": model_cfg, "preprocess_cfg": kept}


def _write_manifest(staging: Path, backbone: Backbone) -> dict[str, int]:
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    entries = {p.relative_to(staging).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files}
    manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "source": backbone.label,
                "fingerprint": backbone.fingerprint, "fingerprint_version": 2, "biomedvr_version": __version__,
                "revision": backbone.revision,  # the hub commit exported (None: shipped or local weights)
                "files": entries}
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    entries[MANIFEST_FILE] = {"bytes": (staging / MANIFEST_FILE).stat().st_size, "sha256": sha256_file(staging / MANIFEST_FILE)}
    sums = "".join(f"{e['sha256']}  {name}\n" for name, e in sorted(entries.items()))
    (staging / SUMS_FILE).write_text(sums, encoding="utf-8")
    sizes = {name: int(e["bytes"]) for name, e in entries.items()}
    sizes[SUMS_FILE] = (staging / SUMS_FILE).stat().st_size
    return sizes


def _check_target(spec: BackboneSpec, out: Path, force: bool) -> None:
    if spec.kind == "local-dir" and spec.local_path is not None:
        source, target = spec.local_path.resolve(), out.resolve()
        if source == target:
            raise UsageError("the export folder is the backbone folder itself", "choose another DIR")
        # Inside it, the export would become an unlisted file of the source; around it, --force would replace it.
        if target.is_relative_to(source) or source.is_relative_to(target):
            where = "inside" if target.is_relative_to(source) else "around"
            raise UsageError(f"the export folder {target.name} is {where} the backbone folder {source.name}",
                             "choose a DIR outside the backbone folder")
    here, target = Path.cwd().resolve(), out.resolve()
    if here.is_relative_to(target):  # the folder is moved into place by rename: not the one a shell stands in
        where = "the current folder" if here == target else "a folder around the current folder"
        raise UsageError(f"the export folder {target.name or target} is {where}",
                         "export into a new folder, e.g. `biomedvr backbones export NAME ./backbone`")
    if out.exists() and not out.is_dir():
        raise OutputNotWritableError(f"{out.name} exists and is not a folder", "choose another DIR")
    check_folder_writable(out)  # a file where a parent folder should be, or no permission: before the backbone loads
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise OutputExistsError(out.name, option="DIR")
        why = _not_replaceable(out)
        if why:  # --force would delete the user's own files with the folder
            raise UsageError(f"--force replaces only an earlier export, and {out.name} {why}",
                             "export into a new or empty folder (or move that folder's files away first)")


# What a file manager leaves in any folder it shows; nothing of the user's is lost with these.
_FOLDER_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".directory"})


def _is_litter(name: str) -> bool:
    return name in _FOLDER_LITTER or name.startswith("._")


def _not_replaceable(out: Path) -> str | None:
    """Why ``--force`` must not replace the folder ``out``, else None: it is not an earlier export (no
    readable manifest), or it holds anything the export did not write: a file its manifest does not
    list, or a hidden file or folder (``.git``) other than a file manager's litter (``.DS_Store``)."""
    try:
        listed = set(manifest_entries(json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))))
    except (OSError, ValueError, BiomedVRError):
        listed = None
    foreign = 0
    for root, dirs, names in os.walk(out):  # does not follow linked folders (their files are not deleted)
        foreign += sum(1 for d in dirs if d.startswith("."))
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        foreign += sum(1 for n in names if n.startswith(".") and not _is_litter(n))
    if listed is None:
        visible = any(not p.name.startswith(".") for p in out.iterdir())
        return f"is not one (it has no readable {MANIFEST_FILE})" if visible or foreign else None
    foreign += len(unlisted_files(out, listed))
    return f"also holds {foreign} entries the export did not write" if foreign else None


def _swap_in(staging: Path, out: Path) -> None:
    """Move the finished folder into place, replacing an old one only once the new one is complete."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        if old.exists():
            old.rename(out)  # put the user's folder back
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_backbone(source: str, out: Path, *, force: bool = False, allow_download: bool | None = None,
                    reporter: DownloadReporter | None = None) -> ExportResult:
    """Write a self-contained ``local-dir`` folder for backbone ``source`` (downloading it first if needed)."""
    spec = parse_backbone(source)
    out = Path(out).expanduser()
    _check_target(spec, out, force)
    backbone = load_backbone(spec, device="cpu", allow_download=allow_download, reporter=reporter)
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        staging.mkdir(parents=True)
        state = {k: v.detach().to("cpu").clone().contiguous() for k, v in backbone.model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        del state
        document = _config_document(backbone, _copy_text_tower(spec, backbone, staging))
        (staging / CONFIG_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        # safetensors creates its file owner-only; give it the umask's mode like every other file here.
        os.chmod(staging / WEIGHTS_FILE, (staging / CONFIG_FILE).stat().st_mode & 0o777)
        files = _write_manifest(staging, backbone)
        check = load_backbone(f"local-dir:{staging}", device="cpu", allow_download=False)
        if check.fingerprint != backbone.fingerprint:
            raise BackboneUnavailableError(
                f"the exported folder loads as {check.fingerprint}, not {backbone.fingerprint}",
                "report this as a bug; use the Hugging Face cache route meanwhile")
        _swap_in(staging, out)
    except (OSError, SafetensorError) as exc:  # safetensors wraps I/O errors (a full disk) in its own type
        shutil.rmtree(staging, ignore_errors=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:120]
        full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) or "space" in reason.lower()
        raise OutputWriteError(f"cannot write {out.name or out} ({reason}); nothing was written",
                               "free some disk space, or choose a DIR on another disk" if full else
                               "choose a DIR in a folder you can write to") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out, backbone.label, backbone.fingerprint, files)

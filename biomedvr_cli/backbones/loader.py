"""Load a frozen open_clip backbone with its tokenizer, preprocessing and fingerprint.

Files are found in the caches first (``availability``); what is missing is downloaded on
first use (``downloads``) unless downloads are off; then open_clip builds the model with
the hub forced offline and its logging quiet, so a load either works or fails with one
:class:`BackboneUnavailableError` (exit 4) that says how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from biomedvr_cli.backbones.availability import Availability, check_hf_hub, check_tag, hf_cached, read_model_cfg, text_needs
from biomedvr_cli.backbones.checkpoints import (
    is_torchscript,
    load_state_into,
    looks_like_openai,
    openai_release,
    torchscript_state_dict,
)
from biomedvr_cli.backbones.device import resolve_device
from biomedvr_cli.backbones.downloads import (
    ALLOW_DOWNLOAD_ENV,
    DownloadReporter,
    current_reporter,
    downloads_allowed,
    fetch_from_hub,
    fetch_hint,
    hub_offline,
    offline_reason,
    quiet_loading,
)
from biomedvr_cli.backbones.fingerprint import legacy_fingerprint, weights_fingerprint
from biomedvr_cli.backbones.localdir import LocalDir, local_tokenizer, read_local_dir, text_cfg_override
from biomedvr_cli.backbones.localdir import unverified_notice
from biomedvr_cli.backbones.model_checks import check_export_fingerprint, check_finite, normalisation
from biomedvr_cli.backbones.specs import BackboneSpec, parse_backbone
from biomedvr_cli.errors import BackboneUnavailableError, BiomedVRError

__all__ = ["ALLOW_DOWNLOAD_ENV", "Backbone", "allow_download_default", "describe_availability", "load_backbone"]


@dataclass
class Backbone:
    """A frozen vision-language model and everything needed to use it consistently."""

    spec: BackboneSpec
    model: torch.nn.Module
    tokenizer: object
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    logit_scale: float
    fingerprint: str
    device: torch.device
    model_cfg: dict = field(default_factory=dict)  # the open_clip model config it was built from

    def __repr__(self) -> str:  # one line: the model itself would print hundreds in a notebook cell
        return (f"Backbone({self.label!r}, image_size={self.image_size}, embed_dim={self.embed_dim}, "
                f"device={str(self.device)!r}, fingerprint={self.fingerprint[:19]!r})")  # "sha256:" and 12 hex

    @property
    def label(self) -> str:
        """Path-free backbone name (for adapters and logs)."""
        return self.spec.label

    @property
    def revision(self) -> str | None:
        """The hub commit the weights were read from (a preset's pinned one), or None for shipped or local files."""
        from biomedvr_cli.backbones.revisions import weights_revision

        return weights_revision(self.spec)

    def fingerprint_for(self, recorded: str) -> str:
        """The fingerprint to compare with one an adapter recorded: ``recorded`` itself when it is
        this model's biomedvr 0.1.0 fingerprint (computed the old way), else the current one."""
        if recorded != self.fingerprint and recorded == legacy_fingerprint(self.model):
            return recorded
        return self.fingerprint

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """Map [0,1] pixels to the backbone's normalised input."""
        mean = torch.tensor(self.mean, device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
        return (images01 - mean) / std

    def encode_images(self, images01: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features for [0,1] images of the backbone's size.

        Gradients flow to the input when the caller enables them (VR training needs
        that); the weights never receive gradients.
        """
        features = self.model.encode_image(self.normalize(images01))
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
        """L2-normalised text features, encoded in bounded batches without gradients."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start : start + batch_size])).to(self.device)
            chunks.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        if not chunks:
            return torch.empty(0, self.embed_dim)
        return torch.cat(chunks).cpu()

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint embedding space."""
        proj = getattr(self.model.visual, "output_dim", None)
        if proj:
            return int(proj)
        with torch.no_grad():
            probe = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
            return int(self.model.encode_image(probe).shape[-1])


def allow_download_default() -> bool:
    """Whether a backbone missing from the caches is downloaded when no option says otherwise."""
    return downloads_allowed(None)


def _source_name(spec: BackboneSpec) -> str:
    """What the user typed, for commands in hints (`biomedvr backbones export SOURCE DIR`)."""
    return spec.model if spec.kind == "local-dir" else spec.label


def _builtin_text_needs(model_name: str) -> Availability | None:
    """Missing hub repos of a built-in open_clip config's HF text tower (e.g. roberta-ViT-B-32)."""
    import open_clip

    cfg = open_clip.get_model_config(model_name)
    needs = text_needs(cfg) if cfg else []
    return Availability(False, missing=tuple(n.repo for n in needs), needs=tuple(needs)) if needs else None


def _find_files(spec: BackboneSpec) -> tuple[Availability, LocalDir | None]:
    """What is on this machine for ``spec`` and what a download would fetch; no network."""
    import open_clip

    preset = spec.preset
    if preset is not None and preset.config_path is not None:
        if preset.weights_path is None or not preset.weights_path.is_file():
            raise _unavailable(spec, "reinstall biomedvr: the shipped sandbox weights are missing from the package")
        return Availability(True, checkpoint=preset.weights_path), None
    if spec.model.startswith("hf-hub:"):
        from biomedvr_cli.backbones.revisions import pinned_local_dir

        found = check_hf_hub(spec, preset.hf_repos if preset else ())
        # A pinned repo is built from its commit's snapshot (open_clip's hf-hub: would read `main`).
        return found, pinned_local_dir(spec.model[len("hf-hub:"):]) if found.available else None
    if spec.kind == "local-dir":
        assert spec.local_path is not None
        local = read_local_dir(spec.local_path)
        return Availability(not local.needs, missing=tuple(n.repo for n in local.needs), needs=tuple(local.needs)), local
    if spec.kind == "file":
        assert spec.local_path is not None
        if not spec.local_path.is_file():
            what = ("is a folder" if spec.local_path.is_dir() else
                    "is not a regular file (a device or pipe)" if spec.local_path.exists() else "does not exist")
            raise BackboneUnavailableError(f"weights file {spec.local_path.name} {what}",
                                           "check the path after MODEL: in --backbone (a weights file)")
        if spec.model not in open_clip.list_models():
            raise BackboneUnavailableError(f"{spec.model!r} is not an open_clip model name", "see open_clip.list_models()")
        found = Availability(True, checkpoint=spec.local_path)
    else:
        assert spec.pretrained is not None
        found = check_tag(spec.model, spec.pretrained)
    return (_builtin_text_needs(spec.model) or found) if found.available else found, None


def _unavailable(spec: BackboneSpec, hint: str) -> BackboneUnavailableError:
    return BackboneUnavailableError(f"weights for backbone {spec.label!r} are not available on this machine", hint)


def _ensure_files(spec: BackboneSpec, allow_download: bool | None,
                  reporter: DownloadReporter) -> tuple[Availability, LocalDir | None]:
    """Find the files, downloading what is missing when allowed (config first, then what it names)."""
    hint_repos = list(spec.preset.hf_repos) if spec.preset else []
    for _ in range(3):
        found, local = _find_files(spec)
        if found.available:
            return found, local
        repos = list(dict.fromkeys([*found.missing, *hint_repos]))
        hub_repos = [r for r in repos if "://" not in r]
        if not found.needs:  # an open_clip tag with only a URL
            raise _unavailable(spec, f"download {found.missing[0]} into ~/.cache/clip/ on a connected machine, "
                                     f"or pass --backbone {spec.model}:PATH_TO_WEIGHTS")
        if not downloads_allowed(allow_download):
            reason = offline_reason(allow_download)
            how = ("unset HF_HUB_OFFLINE" if reason.startswith("HF_HUB_OFFLINE") else
                   "drop --offline (offline=False in Python)" if reason.startswith("--offline") else
                   f"unset {ALLOW_DOWNLOAD_ENV}")
            raise BackboneUnavailableError(
                f"backbone {spec.label!r} is not on this machine and downloads are off ({reason})",
                f"{how} to download it on first use; or {fetch_hint(hub_repos, _source_name(spec))}")
        fetch_from_hub(list(found.needs), _source_name(spec), reporter, hub_repos)
    raise _unavailable(spec, "the download did not provide every file; run again, or " +
                       fetch_hint(list(found.missing), _source_name(spec)))


def _build_named(model_name: str, checkpoint: Path, quick_gelu: bool, preprocess: dict) -> tuple[torch.nn.Module, dict]:
    """A built-in open_clip architecture with weights from ``checkpoint`` (a state dict or an OpenAI TorchScript archive)."""
    import open_clip

    if is_torchscript(checkpoint):
        quick_gelu = True  # only OpenAI ships CLIP as TorchScript, trained with QuickGELU
        model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=True, pretrained_text=False,
                                       force_preprocess_cfg=preprocess)
        load_state_into(model, torchscript_state_dict(checkpoint))
    else:
        model = open_clip.create_model(model_name, pretrained=str(checkpoint), force_quick_gelu=quick_gelu,
                                       force_preprocess_cfg=preprocess)
    model_cfg = open_clip.get_model_config(model_name) or {}
    if quick_gelu:
        model_cfg["quick_gelu"] = True
    return model, model_cfg


def _build(spec: BackboneSpec, found: Availability, local: LocalDir | None,
           reporter: DownloadReporter) -> tuple[torch.nn.Module, object, dict]:
    """(model, tokenizer, model config) for files that are all on this machine."""
    import open_clip

    preset = spec.preset
    if preset is not None and preset.config_path is not None:
        open_clip.add_model_config(preset.config_path)
        model, cfg = _build_named(spec.model, preset.weights_path, False, {})  # type: ignore[arg-type]
        return model, open_clip.get_tokenizer(spec.model), cfg
    if local is not None:
        override = text_cfg_override(local)
        model = open_clip.create_model(f"local-dir:{local.folder}", **({"text_cfg": override} if override else {}))
        return model, local_tokenizer(local), local.model_cfg
    if spec.model.startswith("hf-hub:"):
        config = hf_cached(spec.model[len("hf-hub:"):], "open_clip_config.json")
        cfg = read_model_cfg(config) if config else {}
        return open_clip.create_model(spec.model), open_clip.get_tokenizer(spec.model), cfg
    assert found.checkpoint is not None
    if spec.kind == "file":
        quick = looks_like_openai(spec.model, found.checkpoint)
        if not quick and openai_release(spec.model).get("quick_gelu"):
            reporter.notify(f"{spec.model}:FILE builds GELU activations (LAION/DataComp weights); if the file holds "
                            f"OpenAI's weights, pass --backbone {spec.model}-quickgelu:FILE instead")
        model, cfg = _build_named(spec.model, found.checkpoint, quick, {})
    else:
        tag_cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained)
        preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
        model, cfg = _build_named(spec.model, found.checkpoint, bool(tag_cfg.get("quick_gelu", False)), preprocess)
    return model, open_clip.get_tokenizer(spec.model), cfg


def _create(spec: BackboneSpec, allow_download: bool | None,
            reporter: DownloadReporter) -> tuple[torch.nn.Module, object, dict, LocalDir | None]:
    """Build the model and tokenizer for ``spec``, downloading missing files first when allowed."""
    found, local = _ensure_files(spec, allow_download, reporter)
    if spec.kind == "local-dir" and (notice := unverified_notice(local)):
        reporter.notify(notice)
    with hub_offline(), quiet_loading():
        try:
            model, tokenizer, cfg = _build(spec, found, local, reporter)
        except BiomedVRError:
            raise
        except Exception as exc:  # open_clip/transformers raise many types; all mean "cannot load"
            raise BackboneUnavailableError(f"could not load backbone {spec.label!r}: {type(exc).__name__}: "
                                           f"{_first_reason(exc)}", _load_hint(spec, found)) from None
    return model, tokenizer, cfg, local


def _first_reason(exc: Exception) -> str:
    """The first line of an error, with the next one when the first only introduces it ("...: ")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return ""
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text[:200]


def _load_hint(spec: BackboneSpec, found: Availability) -> str:
    """Where the damaged file is likely to be: a checkpoint outside the hub cache is named itself."""
    checkpoint = found.checkpoint
    if spec.kind in ("preset", "tag") and checkpoint is not None and "huggingface" not in Path(checkpoint).parts:
        shown = str(checkpoint).replace(str(Path.home()), "~", 1)
        return f"the cached file {shown} may be damaged: remove it and run again to download it"
    if spec.kind in ("preset", "hf-hub", "tag"):
        return ("the cached files may be damaged: remove the model's folder under HF_HOME/hub "
                "(~/.cache/huggingface/hub/models--ORG--NAME) and run again to download it")
    return "check that the weights file belongs to this architecture and that the folder is complete"


def _image_size(model: torch.nn.Module) -> int:
    size = getattr(model.visual, "image_size", 224)
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise BackboneUnavailableError("non-square backbone input sizes are not supported", "use a square-input model")
        size = size[0]
    return int(size)


def load_backbone(
    spec: str | BackboneSpec,
    *,
    device: str | torch.device = "cpu",
    allow_download: bool | None = None,
    reporter: DownloadReporter | None = None,
) -> Backbone:
    """Load a frozen backbone (eval mode, no gradients on its weights).

    Missing files are downloaded into the Hugging Face cache on first use, announced through
    ``reporter`` (default: the installed one), unless ``allow_download`` is False or
    HF_HUB_OFFLINE / BIOMEDVR_ALLOW_DOWNLOAD=0 say otherwise; then a missing backbone raises
    :class:`BackboneUnavailableError` (exit 4) at once, with the commands that fetch it.
    """
    if isinstance(spec, str):
        spec = parse_backbone(spec)
    downloads_allowed(allow_download)  # a mistyped BIOMEDVR_ALLOW_DOWNLOAD is refused whatever the backbone
    torch_device = device if isinstance(device, torch.device) else resolve_device(device)
    model, tokenizer, model_cfg, local = _create(spec, allow_download, reporter or current_reporter())
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    check_finite(model, spec, local)
    mean, std = normalisation(model, spec, local)
    fingerprint = weights_fingerprint(model)
    check_export_fingerprint(local, fingerprint)
    model.to(torch_device)
    logit_scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0
    return Backbone(
        spec=spec, model=model, tokenizer=tokenizer, image_size=_image_size(model),
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        logit_scale=logit_scale, fingerprint=fingerprint, device=torch_device, model_cfg=model_cfg,
    )


def describe_availability(spec: BackboneSpec) -> tuple[bool, str]:
    """(available offline?, note) for ``biomedvr backbones``; downloads nothing."""
    preset = spec.preset
    if preset is not None and preset.weights_path is not None:
        ok = preset.weights_path.is_file()
        return ok, "shipped with biomedvr" if ok else "shipped weights missing: reinstall biomedvr"
    if spec.model.startswith("hf-hub:"):
        found = check_hf_hub(spec, preset.hf_repos if preset else ())
    elif spec.pretrained:
        found = check_tag(spec.model, spec.pretrained)
    else:
        return Path(spec.local_path or "").exists(), "local files"
    if found.available:
        jit = found.checkpoint is not None and is_torchscript(found.checkpoint)
        return True, "cached locally" + (" (OpenAI TorchScript archive, converted on load)" if jit else "")
    later = "downloads on first use" if downloads_allowed(None) else f"downloads are off ({offline_reason(None)})"
    return False, f"not cached ({', '.join(found.missing)}): {later}"

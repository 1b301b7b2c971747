"""Load a frozen open_clip backbone with its tokenizer, preprocessing and fingerprint."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from biomedvr_cli.backbones.availability import check_hf_hub, check_tag
from biomedvr_cli.backbones.device import resolve_device
from biomedvr_cli.backbones.fingerprint import weights_fingerprint
from biomedvr_cli.backbones.specs import BackboneSpec, parse_backbone
from biomedvr_cli.errors import BackboneUnavailableError

ALLOW_DOWNLOAD_ENV = "BIOMEDVR_ALLOW_DOWNLOAD"


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

    @property
    def label(self) -> str:
        """Path-free backbone name (for adapters and logs)."""
        return self.spec.label

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
    """Downloads are off unless the user set BIOMEDVR_ALLOW_DOWNLOAD=1."""
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in {"1", "true", "yes"}


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Force Hugging Face offline mode so that cached files load without network calls."""
    if not offline:
        yield
        return
    import huggingface_hub.constants as hub_constants

    saved_env = os.environ.get("HF_HUB_OFFLINE")
    saved_const = hub_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved_const
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def _unavailable(spec: BackboneSpec, hint: str) -> BackboneUnavailableError:
    return BackboneUnavailableError(f"weights for backbone {spec.label!r} are not available on this machine", hint)


def _create(spec: BackboneSpec, allow_download: bool) -> tuple[torch.nn.Module, object]:
    """Build the open_clip model and tokenizer for ``spec`` without unexpected downloads."""
    import open_clip

    # open_clip logs at INFO/WARNING about its resolution steps; keep our stderr tidy.
    logging.getLogger("open_clip").setLevel(logging.ERROR)
    kwargs: dict = {}
    model_name, pretrained = spec.model, spec.pretrained
    preset = spec.preset
    if preset is not None and preset.config_path is not None:
        open_clip.add_model_config(preset.config_path)
        weights = preset.weights_path
        if weights is None or not weights.is_file():
            raise _unavailable(spec, "reinstall biomedvr: the shipped sandbox weights are missing from the package")
        pretrained = str(weights)
    elif spec.kind in ("preset", "tag") and pretrained:
        found = check_tag(model_name, pretrained)
        if found.available and found.checkpoint is not None:
            tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
            kwargs["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
            kwargs["force_preprocess_cfg"] = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
            pretrained = str(found.checkpoint)
        elif not allow_download:
            raise _unavailable(spec, found.fetch_hint)
    elif spec.kind in ("preset", "hf-hub") and model_name.startswith("hf-hub:"):
        found = check_hf_hub(spec, preset.hf_repos if preset else ())
        if not found.available and not allow_download:
            raise _unavailable(spec, found.fetch_hint)
    elif spec.kind == "local-dir":
        assert spec.local_path is not None
        if not (spec.local_path / "open_clip_config.json").is_file():
            raise BackboneUnavailableError(
                "the local-dir backbone folder has no open_clip_config.json",
                "point local-dir: at a folder holding open_clip_config.json and the weights file",
            )
    elif spec.kind == "file":
        assert spec.local_path is not None
        if not spec.local_path.is_file():
            raise BackboneUnavailableError(
                f"weights file {spec.local_path.name} does not exist", "check the path after MODEL: in --backbone"
            )
        if spec.model not in open_clip.list_models():
            raise BackboneUnavailableError(f"{spec.model!r} is not an open_clip model name", "see open_clip.list_models()")
        pretrained = str(spec.local_path)

    with _hub_offline(not allow_download):
        try:
            model = open_clip.create_model(model_name, pretrained=pretrained, **kwargs)
            tokenizer = open_clip.get_tokenizer(model_name)
        except BackboneUnavailableError:
            raise
        except Exception as exc:  # open_clip/hub raise many types; all mean "cannot load"
            hint = (
                "check the backbone files, or pass --allow-download on a connected machine"
                if not allow_download
                else "check the model name and your connection"
            )
            raise BackboneUnavailableError(
                f"could not load backbone {spec.label!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", hint
            ) from None
    return model, tokenizer


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
) -> Backbone:
    """Load a frozen backbone (eval mode, no gradients on its weights).

    Raises :class:`BackboneUnavailableError` (exit 4) quickly, with the fetch command,
    when the weights are not on this machine and downloads are not allowed.
    """
    if isinstance(spec, str):
        spec = parse_backbone(spec)
    if allow_download is None:
        allow_download = allow_download_default()
    torch_device = device if isinstance(device, torch.device) else resolve_device(device)
    model, tokenizer = _create(spec, allow_download)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    fingerprint = weights_fingerprint(model)
    model.to(torch_device)
    preprocess = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = tuple(float(v) for v in preprocess.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = tuple(float(v) for v in preprocess.get("std", (0.26862954, 0.26130258, 0.27577711)))
    logit_scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0
    return Backbone(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        image_size=_image_size(model),
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        logit_scale=logit_scale,
        fingerprint=fingerprint,
        device=torch_device,
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
    return found.available, "cached locally" if found.available else f"missing: {', '.join(found.missing)}"

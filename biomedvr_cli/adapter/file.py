"""The adapter file: one self-describing ``.safetensors`` file.

Tensors hold the learned VR patterns, the gate and the encoded text banks; the
``__metadata__`` holds ``format``, ``format_version`` and a JSON ``config`` (see
docs/adapter-format.md). Never pickled; written atomically; no file paths or identifiers inside.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from biomedvr_cli.adapter.config import AdapterConfig
from biomedvr_cli.atomic import write_with_atomic
from biomedvr_cli.attributes.privacy import check_stored_class_names
from biomedvr_cli.errors import AdapterError, BackboneUnavailableError, OutputWriteError

ADAPTER_FORMAT = "biomedvr-adapter"
FORMAT_VERSION = "1.0"
# Metadata key of the content digest fit writes (since 2026-12-08); adapters without it still load.
CONTENT_KEY = "content_sha256"


@dataclass
class Adapter:
    """An adapter as loaded: its tensors (on CPU) and its typed config."""

    tensors: dict[str, torch.Tensor]
    config: AdapterConfig

    @property
    def classes(self) -> list[str]:
        """Ordered class names."""
        return list(self.config.classes)

    def __repr__(self) -> str:  # the dataclass form prints every tensor
        size = sum(t.numel() for t in self.tensors.values())
        return (f"Adapter({len(self.config.classes)} classes, backbone={self.config.backbone.label!r}, "
                f"{len(self.tensors)} tensors, {size} values)")

    def check_backbone(self, fingerprint: str, image_size: int, mean: tuple[float, ...] | None = None,
                       std: tuple[float, ...] | None = None, *, accept_preprocessing: bool = False) -> None:
        """Refuse a backbone whose weights, input size or normalisation differ from the training one."""
        expected = self.config.backbone
        if expected.fingerprint != fingerprint:
            raise BackboneUnavailableError(
                f"this adapter was trained on backbone {expected.label!r} ({expected.fingerprint}), "
                f"but the loaded backbone has fingerprint {fingerprint}",
                _backbone_hint(expected.label),
            )
        size = int(self.config.preprocessing.image_size)
        if size != image_size:
            raise AdapterError(
                f"adapter expects {size}px inputs but the backbone takes {image_size}px",
                "use the backbone the adapter was trained with",
            )
        if mean is None or std is None or accept_preprocessing:
            return
        stored = self.config.preprocessing
        if not (_close(stored.mean, mean) and _close(stored.std, std)):
            raise AdapterError(
                f"the backbone normalises with mean {_fmt(mean)} / std {_fmt(std)}, but the adapter was trained "
                f"with mean {_fmt(stored.mean)} / std {_fmt(stored.std)}",
                "load the backbone with the preprocessing it was fitted with, or pass --accept-preprocessing",
            )


def _backbone_hint(label: str) -> str:
    if label == "local-dir" or label.endswith(":local-file"):
        return "pass --backbone with the same local-dir:FOLDER (or MODEL:WEIGHTS file) that fit used"
    return f"pass --backbone {label} (the weights it was trained with)"


def _close(a, b, tol: float = 1e-4) -> bool:
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= tol for x, y in zip(a, b))


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


def _canonical(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_digest(config_text: str, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the stored config text and every tensor's name, dtype, shape and bytes.

    Stored beside the config, so that an adapter changed after fit (a class name swapped, a bias
    edited) is refused on load. A checksum against accidents, not a signature: anyone who can
    write the file can also rewrite the digest.
    """
    digest = hashlib.sha256(b"biomedvr-adapter-content-v1\0")
    digest.update(config_text.encode("utf-8", "surrogatepass"))
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"\0{name}\0{str(tensor.dtype)}\0{list(tensor.shape)}\0".encode("utf-8", "surrogatepass"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_adapter(path: Path, tensors: dict[str, torch.Tensor], config: AdapterConfig, *, force: bool) -> None:
    """Write the adapter atomically; an existing file needs ``force``.

    Class names that look like patient identifiers are refused (InvalidInputError, exit 3):
    adapters are shared, and hold no paths or identifiers.
    """
    check_stored_class_names(config.classes)
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    config_text = _canonical(config.to_dict())
    metadata = {"format": ADAPTER_FORMAT, "format_version": FORMAT_VERSION, "config": config_text,
                CONTENT_KEY: content_digest(config_text, cpu)}

    def write(tmp: Path) -> None:
        try:
            save_file(cpu, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # safetensors wraps I/O errors (a full disk) in its own type
            raise OutputWriteError(f"cannot write {Path(path).name} ({str(exc).splitlines()[0][:120]}); nothing was written",
                                   "free some disk space, or choose an --out on another disk") from None

    write_with_atomic(Path(path), write, force=force)


def read_metadata(path: Path) -> dict[str, str]:
    """The raw ``__metadata__`` of a safetensors file, without loading tensors."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, a FIFO or a device: never opened
        raise AdapterError(f"adapter {path.name} is not a regular file", "pass the .safetensors file `biomedvr fit` wrote")
    if not path.is_file():
        raise AdapterError(f"adapter {path.name} does not exist", "check the --adapter path (fit writes one)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterError(
            f"{path.name} is not a readable safetensors file ({str(exc).splitlines()[0][:120]})",
            "pass an adapter written by `biomedvr fit`; the file may be truncated or of another kind",
        ) from None


def parse_config(metadata: dict[str, str], name: str) -> AdapterConfig:
    """Check format and version, and return the JSON config."""
    if metadata.get("format") != ADAPTER_FORMAT:
        raise AdapterError(f"{name} is not a biomedvr adapter", "pass an adapter written by `biomedvr fit`")
    version = metadata.get("format_version", "")
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise AdapterError(
            f"{name} has adapter format {version or '?'}; this biomedvr reads {FORMAT_VERSION.split('.')[0]}.x",
            "use the biomedvr version that wrote it, or refit the adapter",
        )
    try:
        config = json.loads(metadata.get("config", ""))
        if not isinstance(config, dict):
            raise AdapterError(f"{name} has a corrupt config", "refit the adapter")
        return AdapterConfig.from_dict(config, name=name)
    except (json.JSONDecodeError, RecursionError):  # nesting no writer makes fails in the checks as well
        raise AdapterError(f"{name} has a corrupt config", "refit the adapter") from None


def read_adapter_header(path: Path) -> tuple[dict[str, str], AdapterConfig]:
    """Metadata and config of an adapter, checked against its tensors' shapes and its content digest.

    What ``info`` reads: it refuses what :func:`load_adapter` refuses on the config, the shapes
    (a width that is not the embedding size, a calibration count that is not its scores') and the
    digest (an adapter changed after fit); the tensors' values are checked only by loading.
    """
    path = Path(path)
    metadata = read_metadata(path)
    config = parse_config(metadata, path.name)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterError(f"cannot read tensors of {path.name}: {str(exc).splitlines()[0][:120]}",
                           "refit the adapter") from None
    check_shapes(shapes, config, path.name)
    if CONTENT_KEY in metadata:  # adapters are small: info reads them whole to check the digest
        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise AdapterError(f"cannot read tensors of {path.name}: {str(exc).splitlines()[0][:120]}",
                               "refit the adapter") from None
        check_content(metadata, tensors, path.name)
    return metadata, config


_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_content(metadata: dict[str, str], tensors: dict[str, torch.Tensor], name: str) -> bool:
    """Refuse an adapter whose config or tensors no longer match the digest fit stored.

    Returns whether a digest was there to check (adapters written before 2026-12-08 have none).
    """
    stored = metadata.get(CONTENT_KEY)
    if stored is None:
        return False
    if not isinstance(stored, str) or not _HEX64.fullmatch(stored):
        raise AdapterError(f"{name}: its content digest is not a sha256 (64 hexadecimal digits)", _EDITED)
    if content_digest(metadata.get("config", ""), tensors) != stored:
        raise AdapterError(f"{name} was changed after fit: its config or tensors do not match the content "
                           "digest fit stored", "refit the adapter, or use the file fit wrote")
    return True


def load_adapter(path: Path) -> Adapter:
    """Load and validate an adapter (format, version, config, content digest, finite tensors, shapes)."""
    path = Path(path)
    metadata = read_metadata(path)
    config = parse_config(metadata, path.name)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise AdapterError(f"cannot read tensors of {path.name}: {exc}", "refit the adapter") from None
    check_content(metadata, tensors, path.name)
    _check_dtypes(tensors, path.name)
    bad = sorted(name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))
    if bad:
        raise AdapterError(f"{path.name} holds non-finite values (NaN or inf) in {', '.join(bad[:3])}",
                           "the file is damaged or was edited; refit the adapter")
    # Scoring takes the sentence banks as unit vectors (cosines); a scaled bank gives confident nonsense.
    unnormal = sorted(k for k, t in tensors.items() if k.startswith("bank_") and t.dim() == 2 and t.shape[0]
                      and float((t.double().norm(dim=1) - 1).abs().max()) > 1e-3)
    if unnormal:
        raise AdapterError(f"{path.name}: the sentence bank {unnormal[0]} does not hold unit vectors (no fit writes one)",
                           _EDITED)
    check_shapes({key: tuple(t.shape) for key, t in tensors.items()}, config, path.name)
    return Adapter(tensors=tensors, config=config)


# Index tensors (which class owns a sentence, which fold held an image); every other tensor is a float.
_INTEGER_TENSORS = ("owner_", "conformal_folds")


def _check_dtypes(tensors: dict[str, torch.Tensor], name: str) -> None:
    for key, tensor in sorted(tensors.items()):
        integer = key.startswith(_INTEGER_TENSORS)
        right = (not tensor.is_floating_point() and not tensor.is_complex() and tensor.dtype != torch.bool
                 if integer else tensor.is_floating_point())
        if not right:
            wanted = "whole numbers" if integer else "floating-point numbers"
            raise AdapterError(f"{name}: tensor {key} is {str(tensor.dtype).removeprefix('torch.')}, not {wanted}", _EDITED)


def check_shapes(shapes: dict[str, tuple[int, ...]], config: AdapterConfig, name: str) -> None:
    """The sentence banks and the feature head live in the backbone's embedding space (their width is
    embed_dim), and each calibration record counts the scores stored beside it."""
    dim = int(config.backbone.embed_dim)
    for key, shape in sorted(shapes.items()):
        if key.startswith("bank_") or key == "head_weight":
            width = int(shape[-1]) if len(shape) == 2 else None
            if width != dim:
                raise AdapterError(f"{name}: tensor {key} has shape {list(shape)}, but the config's "
                                   f"backbone.embed_dim is {dim}", _EDITED)
    for part, tensor in (("conformal", "conformal_scores"), ("outliers", "outlier_scores")):
        record = config.calibration.get(part)
        stored = shapes.get(tensor)
        if isinstance(record, dict) and "images" in record and stored != (record["images"],):
            count = str(stored[0]) if stored is not None and len(stored) == 1 else "no valid"
            raise AdapterError(f"{name}: config.calibration.{part}.images is {record['images']}, but the adapter "
                               f"stores {count} scores", _EDITED)


_EDITED = "the file is damaged or was edited; refit the adapter"

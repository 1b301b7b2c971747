"""What a built backbone must satisfy before it is used: finite weights, a usable preprocessing
mean and std, and (for an exported folder) the fingerprint its manifest recorded. Each failure is
one line, exit 4, naming the file."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from biomedvr_cli.backbones.localdir import LocalDir
from biomedvr_cli.backbones.specs import BackboneSpec
from biomedvr_cli.errors import BackboneUnavailableError


def weights_name(spec: BackboneSpec, local: LocalDir | None) -> str:
    """The weights file a message should name: the one open_clip read from a folder, a MODEL:FILE file, else the label."""
    if local is not None:
        try:
            from open_clip.factory import _find_checkpoint_in_dir  # the file open_clip chose

            found = _find_checkpoint_in_dir(local.folder)
        except (ImportError, AttributeError):  # a newer open_clip: name the folder's usual file
            found = None
        return Path(found).name if found else "the weights file"
    return spec.local_path.name if spec.kind == "file" and spec.local_path else f"the weights of {spec.label!r}"


@torch.no_grad()
def check_finite(model: torch.nn.Module, spec: BackboneSpec, local: LocalDir | None) -> None:
    """Refuse weights holding NaN or inf: they give NaN probabilities for every image."""
    bad = [name for name, t in model.state_dict().items()
           if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise BackboneUnavailableError(
            f"{weights_name(spec, local)} of backbone {spec.label!r} holds non-finite values (NaN or inf) "
            f"in {', '.join(bad[:3])}{' and more' if len(bad) > 3 else ''}: the weights are corrupt",
            "copy or download the weights again (or export the backbone again with `biomedvr backbones export`)")


def normalisation(model: torch.nn.Module, spec: BackboneSpec, local: LocalDir | None) -> tuple[tuple, tuple]:
    """The preprocessing mean and std: three finite numbers each, std above zero (images are divided by it)."""
    preprocess = getattr(model.visual, "preprocess_cfg", {}) or {}
    where = ("open_clip_config.json in the local-dir folder" if local is not None
             else f"the preprocessing config of backbone {spec.label!r}")
    values = {"mean": preprocess.get("mean", (0.48145466, 0.4578275, 0.40821073)),
              "std": preprocess.get("std", (0.26862954, 0.26130258, 0.27577711))}
    for key, value in values.items():
        ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        if not ok:
            raise BackboneUnavailableError(f"{where}: preprocessing {key} must be three finite numbers, "
                                           f"not {str(value)[:60]!r}", "fix preprocess_cfg, or export the backbone again")
        if key == "std" and min(value) <= 0:
            raise BackboneUnavailableError(f"{where}: preprocessing std {list(value)} has a value of 0 or less "
                                           "(pixels are divided by it)", "fix preprocess_cfg, or export the backbone again")
    return tuple(float(v) for v in values["mean"]), tuple(float(v) for v in values["std"])


def check_export_fingerprint(local: LocalDir | None, fingerprint: str) -> None:
    manifest = (local.manifest if local else None) or {}
    recorded = manifest.get("fingerprint")
    if recorded and manifest.get("fingerprint_version") == 2 and recorded != fingerprint:
        raise BackboneUnavailableError(
            f"the weights in the exported folder do not match its manifest ({fingerprint}, manifest {recorded})",
            "copy the folder again, or export it again with `biomedvr backbones export`")

"""The sizes in a local-dir ``open_clip_config.json``, checked before open_clip builds a model from them.

open_clip trusts its config: ``"image_size": "big"`` ends in "too many values to unpack", a
list nested where a number belongs in an error that names no file, and an image size of a
billion in an allocation that never finishes. Here every size open_clip reads from
``model_cfg`` must be a positive whole number within a bound far above any released model,
and the error names the file and the field.
"""

from __future__ import annotations

from typing import Any

from biomedvr_cli.errors import BackboneUnavailableError

# field -> largest accepted value (released CLIP models: image 448, width 1664, 48 layers, context 512).
_VISION_SIZES = {"image_size": 4096, "patch_size": 1024, "width": 65_536, "head_width": 65_536, "layers": 1000}
_TEXT_SIZES = {"context_length": 100_000, "vocab_size": 10_000_000, "width": 65_536, "heads": 1024, "layers": 1000}
_FIX = "use the open_clip_config.json of an open_clip model repo, or export the backbone again"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return str(value) if abs(value) < 10**12 else "a number of more than 12 digits"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), "null")


def _size(where: str, value: Any, high: int, *, pair: bool = False, several: bool = False) -> None:
    """A positive whole number up to ``high``; ``pair``: or [height, width]; ``several``: or a list (ResNet layers)."""
    ok_number = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high
    if ok_number:
        return
    if (pair or several) and isinstance(value, list) and value and (len(value) == 2 or several):
        for i, item in enumerate(value):
            _size(f"{where}[{i}]", item, high)
        return
    shape = " (or two of them: height, width)" if pair else " (or a list of them)" if several else ""
    raise BackboneUnavailableError(
        f"{where} is {_describe(value)}; it must be a whole number from 1 to {high}{shape}", _FIX)


def check_model_sizes(model_cfg: dict, file_name: str) -> None:
    """Refuse a ``model_cfg`` whose sizes open_clip could not build from (exit 4, naming file and field)."""
    prefix = f"{file_name} in the local-dir folder: model_cfg"
    if "embed_dim" in model_cfg:
        _size(f"{prefix}.embed_dim", model_cfg["embed_dim"], 65_536)
    for section, sizes in (("vision_cfg", _VISION_SIZES), ("text_cfg", _TEXT_SIZES)):
        cfg = model_cfg.get(section)
        if not isinstance(cfg, dict):
            raise BackboneUnavailableError(f"{prefix}.{section} is {_describe(cfg)}; it must be an object", _FIX)
        for key, high in sizes.items():
            if key in cfg and cfg[key] is not None:
                _size(f"{prefix}.{section}.{key}", cfg[key], high, pair=key == "image_size",
                      several=section == "vision_cfg" and key == "layers")

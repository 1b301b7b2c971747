"""Image inputs: folder trees, CSV manifests and DICOM, safe decoding, few-shot sampling.

Names are imported lazily so that ``import biomedvr_cli.data`` (or listing a folder) does
not pull in torch or pydicom; only the module that is used gets loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ImageRecord": "records",
    "CsvColumns": "records",
    "ImageSource": "records",
    "SPLITS": "records",
    "open_source": "sources",
    "collect_inputs": "sources",
    "is_image_file": "files",
    "IMAGE_EXTENSIONS": "files",
    "DecodeOptions": "decode",
    "InvalidImageError": "decode",
    "decode_image": "decode",
    "parse_window": "decode",
    "DecodedBatch": "tensors",
    "decode_to_tensors": "tensors",
    "resize_and_crop": "tensors",
    "FewShotSplit": "sampling",
    "sample_few_shot": "sampling",
    "test_records": "sampling",
}

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "CsvColumns",
    "DecodeOptions",
    "DecodedBatch",
    "FewShotSplit",
    "ImageRecord",
    "ImageSource",
    "InvalidImageError",
    "collect_inputs",
    "decode_image",
    "decode_to_tensors",
    "is_image_file",
    "open_source",
    "parse_window",
    "resize_and_crop",
    "sample_few_shot",
    "test_records",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads on first use
    from biomedvr_cli.data.decode import DecodeOptions, InvalidImageError, decode_image, parse_window
    from biomedvr_cli.data.files import IMAGE_EXTENSIONS, is_image_file
    from biomedvr_cli.data.records import SPLITS, CsvColumns, ImageRecord, ImageSource
    from biomedvr_cli.data.sampling import FewShotSplit, sample_few_shot, test_records
    from biomedvr_cli.data.sources import collect_inputs, open_source
    from biomedvr_cli.data.tensors import DecodedBatch, decode_to_tensors, resize_and_crop


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

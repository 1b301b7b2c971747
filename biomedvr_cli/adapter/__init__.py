"""The adapter file: a typed config plus safetensors tensors (save, load, validate)."""

from biomedvr_cli.adapter.file import (
    ADAPTER_FORMAT,
    FORMAT_VERSION,
    Adapter,
    load_adapter,
    parse_config,
    read_metadata,
    save_adapter,
)

__all__ = ["ADAPTER_FORMAT", "FORMAT_VERSION", "Adapter", "load_adapter", "parse_config", "read_metadata", "save_adapter"]

"""Typer options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path

import typer

DeviceOption = typer.Option("auto", "--device", help="auto (cuda, then mps, then cpu), cpu, cuda or mps.")
AllowDownloadOption = typer.Option(
    None,
    "--allow-download/--offline-backbone",
    help="Let open_clip download missing backbone weights (default: off, or BIOMEDVR_ALLOW_DOWNLOAD=1).",
    show_default=False,
)
JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout instead of tables.")
ForceOption = typer.Option(False, "--force", help="Overwrite an existing output file.")
AdapterOption = typer.Option(..., "--adapter", "-a", help="Adapter file written by `biomedvr fit`.", exists=False)
BackboneOverrideOption = typer.Option(
    None, "--backbone", help="Backbone to load instead of the one recorded in the adapter (must have the same weights)."
)
WindowOption = typer.Option(None, "--window", help="DICOM window CENTER,WIDTH overriding the file's VOI LUT.")
# Same default as DecodeOptions.max_pixels (kept literal so --help never imports the data package).
MaxPixelsOption = typer.Option(
    64_000_000, "--max-pixels", min=1, metavar="<int>",
    help="Refuse images larger than this many pixels (width x height), checked from the header before decoding.",
)
PathColumnOption = typer.Option("path", "--path-column", help="CSV manifest column holding image paths.")
LabelColumnOption = typer.Option("label", "--label-column", help="CSV manifest column holding class labels.")


def csv_columns(path_column: str, label_column: str):
    """CsvColumns from the two column options (lazy import keeps --help fast)."""
    from biomedvr_cli.data import CsvColumns

    return CsvColumns(path=path_column, label=label_column)


def decode_options(window: str | None, max_pixels: int):
    """DecodeOptions from --window and --max-pixels."""
    from biomedvr_cli.data import DecodeOptions, parse_window

    return DecodeOptions(window=parse_window(window) if window else None, max_pixels=max_pixels)


def default_adapter_name(images: Path, backbone: str, shots: int) -> Path:
    """``<images>-<backbone>-<K>shot.safetensors`` in the current folder."""
    stem = images.resolve().stem if images.suffix.lower() == ".csv" else images.resolve().name
    safe_backbone = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in backbone.split("/")[-1])[:40]
    return Path(f"{stem or 'images'}-{safe_backbone}-{shots}shot.safetensors")

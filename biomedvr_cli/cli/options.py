"""Typer options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

DeviceOption = typer.Option("auto", "--device", help="auto (cuda, then mps, then cpu), cpu, cuda or mps.")


def _download_display(value: Optional[bool]) -> Optional[bool]:
    """Every command that may load a backbone shows its download notices and progress."""
    from biomedvr_cli.cli.downloads import install

    install()
    return value


# " /--offline-backbone": click's syntax for a second name of the off switch (the pre-0.2 flag).
AllowDownloadOption = typer.Option(
    None,
    "--allow-download/--offline",
    " /--offline-backbone",
    help="A backbone missing from the Hugging Face cache is downloaded on first use (the default; --allow-download "
         "is accepted). --offline (alias --offline-backbone, or HF_HUB_OFFLINE=1, or BIOMEDVR_ALLOW_DOWNLOAD=0) "
         "never touches the network.",
    show_default=False,
    callback=_download_display,
)
AcceptPreprocessingOption = typer.Option(
    False, "--accept-preprocessing",
    help="Go on (with a warning) when the backbone normalises images with another mean/std than the adapter was "
         "fitted with; without it that is an error (exit 4).",
)
JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout instead of tables.")
ForceOption = typer.Option(False, "--force", help="Overwrite an existing output file.")
AdapterOption = typer.Option(..., "--adapter", "-a", help="Adapter file written by `biomedvr fit`.", exists=False)
BackboneOverrideOption = typer.Option(
    None, "--backbone", help="Backbone to load instead of the one recorded in the adapter (must have the same weights)."
)
WindowOption = typer.Option(None, "--window", help="DICOM window CENTER,WIDTH overriding the file's VOI LUT.")
# --seed range: seeds feed numpy and torch generators, which overflow on larger values (a raw error deep in a run).
MAX_SEED = 2**32 - 1
# Same default as DecodeOptions.max_pixels (kept literal so --help never imports the data package).
MaxPixelsOption = typer.Option(
    64_000_000, "--max-pixels", min=1, metavar="<int>",
    help="Refuse images larger than this many pixels (width x height), checked from the header before decoding.",
)
ValShotsOption = typer.Option(
    None, "--val-shots", help="Validation images per class (default min(K, 4); 0 = keep last epoch)."
)
AllowFewerOption = typer.Option(
    False, "--allow-fewer", help="Use all images of classes with fewer than K + validation images (warns)."
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

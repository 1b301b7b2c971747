"""Typer options shared by several commands, declared once."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Optional

import typer
import typer.models
from typer.core import TyperCommand

# Help panels: the sections `fit --help` (and any command registered with PanelCommand) groups its options in.
DATA, METHOD, TRAINING, BACKBONE, OUTPUT = "Data", "Method", "Training", "Backbone", "Output"


def choice(values: Sequence[str]) -> Any:
    """A parameter annotation whose allowed values Typer checks and ``--help`` lists (``<a|b|c>``)."""
    return Literal[tuple(values)]  # type: ignore[valid-type]  # Literal[("a", "b")] is Literal["a", "b"]


# The same values as backbones.device.DEVICE_CHOICES (kept literal so --help never imports torch; a test compares).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
Device = choice(DEVICE_CHOICES)
# Likewise pipeline.evaluate.SPLIT_CHOICES (eval --split) and sandbox.shifts.SHIFTS + "default" (sandbox make --shift).
EVAL_SPLITS = ("auto", "test", "val", "train", "all")
SANDBOX_SHIFTS = ("none", "stain", "blur", "noise", "all", "default")
DeviceOption = typer.Option("auto", "--device", help="auto (cuda, then mps, then cpu), cpu, cuda or mps.",
                            rich_help_panel=BACKBONE)


class PanelCommand(TyperCommand):
    """A command whose plain ``--help`` groups options under their ``rich_help_panel`` (Rich help does so too).

    Arguments come first, then the panels in the order their first option is declared, then
    the options without a panel (``--help`` among them) under "Options".
    """

    def format_options(self, ctx: Any, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name = "Arguments" if param.param_type_name == "argument" else getattr(param, "rich_help_panel", None)
            sections.setdefault(name or "Options", []).append(record)
        order = ["Arguments", *[n for n in sections if n not in ("Arguments", "Options")], "Options"]
        for name in (n for n in order if n in sections):
            with formatter.section(name):
                formatter.write_dl(sections[name])


def given(ctx: typer.Context, name: str) -> bool:
    """Whether parameter ``name`` was set on the command line (or from its environment variable), not defaulted."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


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
    rich_help_panel=BACKBONE,
)
AcceptPreprocessingOption = typer.Option(
    False, "--accept-preprocessing",
    help="Go on (with a warning) when the backbone normalises images with another mean/std than the adapter was "
         "fitted with; without it that is an error (exit 4).",
)
JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout instead of tables.",
                          rich_help_panel=OUTPUT)
ForceOption = typer.Option(False, "--force", help="Overwrite an existing output file.", rich_help_panel=OUTPUT)
AdapterOption = typer.Option(..., "--adapter", "-a", help="Adapter file written by `biomedvr fit`.", exists=False)
BackboneOverrideOption = typer.Option(
    None, "--backbone", help="Backbone to load instead of the one recorded in the adapter (must have the same weights)."
)
WindowOption = typer.Option(None, "--window", help="DICOM window CENTER,WIDTH overriding the file's VOI LUT.",
                            rich_help_panel=DATA)
# --seed range: seeds feed numpy and torch generators, which overflow on larger values (a raw error deep in a run).
MAX_SEED = 2**32 - 1
# Same default as DecodeOptions.max_pixels (kept literal so --help never imports the data package).
MaxPixelsOption = typer.Option(
    64_000_000, "--max-pixels", min=1, metavar="<int>",
    help="Refuse images larger than this many pixels (width x height), checked from the header before decoding.",
    rich_help_panel=DATA,
)
ValShotsOption = typer.Option(
    None, "--val-shots", help="Validation images per class (default min(K, 4); 0 = keep last epoch).",
    rich_help_panel=DATA,
)
AllowFewerOption = typer.Option(
    False, "--allow-fewer", help="Use all images of classes with fewer than K + validation images (warns).",
    rich_help_panel=DATA,
)
PathColumnOption = typer.Option("path", "--path-column", help="CSV manifest column holding image paths.",
                                rich_help_panel=DATA)
LabelColumnOption = typer.Option("label", "--label-column", help="CSV manifest column holding class labels.",
                                 rich_help_panel=DATA)


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


def path_value(value: str) -> Path:
    """Parse a path given on the command line, refusing an empty one (exit 2).

    ``Path("")`` is the current folder, so ``--out ''`` (an unset shell variable, say) would
    otherwise read or write there without a word.
    """
    if isinstance(value, Path):  # a default, already a path
        return value
    if value == "":
        raise typer.BadParameter("an empty path names no file or folder; give one ('.' is the current folder)")
    return Path(value)


def _mentions_path(annotation: Any) -> bool:
    """Whether a parameter annotation is Path, Optional[Path] or list[Path]."""
    if annotation is Path:
        return True
    return any(_mentions_path(arg) for arg in typing.get_args(annotation))


def refuse_empty_paths(app: typer.Typer) -> None:
    """Give every path parameter of every command of ``app`` (sub-apps included) :func:`path_value`.

    Done once at registration rather than option by option, so that a path option added later
    cannot forget it (a test walks every command to check).
    """
    callbacks = [info.callback for info in app.registered_commands]
    for group in app.registered_groups:
        if group.typer_instance is not None:
            refuse_empty_paths(group.typer_instance)
    for callback in callbacks:
        if callback is None:
            continue
        hints = typing.get_type_hints(callback)
        for name, parameter in inspect.signature(callback).parameters.items():
            info = parameter.default
            if isinstance(info, typer.models.ParameterInfo) and _mentions_path(hints.get(name)) \
                    and getattr(info, "parser", None) is None \
                    and getattr(info, "click_type", None) is None:  # click_type: older Typers
                info.parser = path_value

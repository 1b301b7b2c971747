"""``biomedvr fit``: learn an adapter from a few labelled images.

The method comes from the registry (``method/registry.json``, the one ``benchmark --methods``
reads): ``--method NAME`` (default ``biomedvr``; ``--paper`` is ``--method biomedvr-paper``).
Without ``--method``, the method options change the default method one by one; with it, the
named method fixes every setting and an option that would change one is refused (exit 2).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import typer

from biomedvr_cli.cli import csv_options, options
from biomedvr_cli.cli.options import BACKBONE, DATA, METHOD, OUTPUT, TRAINING, choice
from biomedvr_cli.method.config import (
    COMBINE_KINDS,
    GATE_KINDS,
    HEAD_COMBINES,
    HEAD_FAMILIES,
    HEAD_SELECTIONS,
    HEAD_TESTS,
    VR_KINDS,
    unused_settings,
)
from biomedvr_cli.method.recipes import available_recipes
from biomedvr_cli.method.registry import MethodSpec, conflicts, registry

# CLI defaults come from the default registry method (one source of truth; no torch import).
_REGISTRY = registry()
_DEFAULT = _REGISTRY.methods[_REGISTRY.default]
_DEFAULTS = _DEFAULT.config
assert _DEFAULTS is not None and _DEFAULT.recipe is not None
PAPER_METHOD = "biomedvr-paper"

# fit parameter -> (setting it changes: a MethodConfig field or "recipe", how the user spells it).
_SETTING_OPTIONS = {
    "vr": ("vr", "--vr"), "vr_frame": ("vr_frame", "--vr-frame"), "vr_eps": ("vr_eps", "--vr-eps"),
    "gate": ("gate", "--gate"), "combine": ("combine", "--combine"), "beta": ("beta", "--beta"),
    "margin": ("margin", "--margin"), "no_confusion_loss": ("confusion_loss", "--no-confusion-loss"),
    "no_negative": ("negative", "--no-negative"), "no_feature_head": ("feature_head", "--no-feature-head"),
    "head_combine": ("head_combine", "--head-combine"), "head_family": ("head_family", "--head-family"),
    "head_test": ("head_test", "--head-test"), "head_select": ("head_select", "--head-select"),
    "head_clear_z": ("head_clear_z", "--head-clear-z"),
    "top_k": ("k", "--top-k-sentences"), "k_alias": ("k", "--k"),
    "max_sentences": ("m", "--max-sentences"), "m_alias": ("m", "--m"), "recipe": ("recipe", "--recipe"),
}
_OFF_SWITCHES = {"no_confusion_loss", "no_negative", "no_feature_head"}  # the flag turns the setting off


def fit(
    ctx: typer.Context,
    images: Path = typer.Argument(..., help="Class-per-folder tree or CSV manifest (path, label, optional split/group)."),
    shots: int = typer.Option(..., "--shots", "-k", help="Training images per class (K).", rich_help_panel=DATA),
    attributes: Optional[Path] = typer.Option(
        None, "--attributes", rich_help_panel=DATA,
        help="Attributes JSON (default: attributes.json in the images folder, else beside it, else in the current "
             "folder, else class-name templates)."),
    val_shots: Optional[int] = options.ValShotsOption,
    allow_fewer: bool = options.AllowFewerOption,
    path_column: str = options.PathColumnOption,
    label_column: str = options.LabelColumnOption,
    group_column: Optional[str] = csv_options.GroupColumnOption,
    split_column: str = csv_options.SplitColumnOption,
    window: Optional[str] = options.WindowOption,
    max_pixels: int = options.MaxPixelsOption,
    method: choice(_REGISTRY.fit_methods()) = typer.Option(
        _REGISTRY.default, "--method", rich_help_panel=METHOD, metavar="<name>",
        help=f"A method of the registry: {', '.join(_REGISTRY.fit_methods())} (what each is: `biomedvr benchmark "
             "--list-methods`). It fixes every setting below; an option that would change one is refused. Without "
             "--method the options below change the default one by one."),
    paper: bool = typer.Option(False, "--paper", rich_help_panel=METHOD,
                               help=f"Alias of --method {PAPER_METHOD} (BioMedVR exactly as published)."),
    vr: choice(VR_KINDS) = typer.Option(_DEFAULTS.vr, "--vr", rich_help_panel=METHOD,
                                        help="Visual reprogramming: full, padding (the reference's) or mask."),
    vr_frame: Optional[int] = typer.Option(None, "--vr-frame", rich_help_panel=METHOD,
                                           help="Padding VR frame width in px (default: image shrunk to 6/7 of the input)."),
    vr_eps: float = typer.Option(_DEFAULTS.vr_eps, "--vr-eps", rich_help_panel=METHOD,
                                 help="Bound of the additive pattern for --vr full and mask (pixel units in [0,1])."),
    gate: choice(GATE_KINDS) = typer.Option(_DEFAULTS.gate, "--gate", rich_help_panel=METHOD,
                                            help="Shape of the negative expert's weight: global (reference), class or sample."),
    combine: choice(COMBINE_KINDS) = typer.Option(
        _DEFAULTS.combine, "--combine", rich_help_panel=METHOD,
        help="Fuse the experts: signed (a learned weight on the negative expert, from 0), add (reference) or subtract."),
    beta: float = typer.Option(_DEFAULTS.beta, "--beta", rich_help_panel=METHOD,
                               help="Weight of the Confusion-Suppression loss."),
    margin: float = typer.Option(_DEFAULTS.margin, "--margin", rich_help_panel=METHOD,
                                 help="Margin of the Confusion-Suppression loss (logit units)."),
    no_confusion_loss: bool = typer.Option(False, "--no-confusion-loss", rich_help_panel=METHOD,
                                           help="Train with cross-entropy only."),
    no_negative: bool = typer.Option(False, "--no-negative", rich_help_panel=METHOD,
                                     help="Drop the negative expert (AttrVR)."),
    no_feature_head: bool = typer.Option(False, "--no-feature-head", rich_help_panel=METHOD,
                                         help="Sentence scores only (no linear head on the image feature)."),
    head_combine: choice(HEAD_COMBINES) = typer.Option(
        _DEFAULTS.head_combine, "--head-combine", rich_help_panel=METHOD,
        help="How the feature head is made from the cross-validated penalties: select (one penalty that passes "
             "--head-test, chosen by --head-select) or average (every penalty's head and the sentence scores, "
             "weighted by held-out likelihood; tried, not kept as the default)."),
    head_family: choice(HEAD_FAMILIES) = typer.Option(
        _DEFAULTS.head_family, "--head-family", rich_help_panel=METHOD,
        help="The feature head's candidates: logistic heads only, or logistic+gaussian (shared-covariance Gaussian "
             "heads as well, chosen by the same cross-validation)."),
    head_test: choice(HEAD_TESTS) = typer.Option(
        _DEFAULTS.head_test, "--head-test", rich_help_panel=METHOD,
        help="How the feature head must beat the sentence scores in cross-validation: either (clearly more right, or "
             "with 8+ images a class a clearly lower log-loss and no fewer right) or accuracy (clearly more right only)."),
    head_select: choice(HEAD_SELECTIONS) = typer.Option(
        _DEFAULTS.head_select, "--head-select", rich_help_panel=METHOD,
        help="How the feature head's penalty is chosen among those that pass the test: log-loss (lowest held-out "
             "log-loss) or accuracy (most held-out images right)."),
    head_clear_z: float = typer.Option(
        _DEFAULTS.head_clear_z, "--head-clear-z", min=0.0, rich_help_panel=METHOD,
        help="Standard errors the feature head must gain by over the sentence scores in cross-validation "
             "(higher keeps zero-shot more often; 1.5 until 2026-12-06)."),
    top_k: int = typer.Option(_DEFAULTS.k, "--top-k-sentences", rich_help_panel=METHOD,
                              help="Top-k sentences averaged per class (k-nearest attribute scoring)."),
    k_alias: Optional[int] = typer.Option(None, "--k", hidden=True, help="Old spelling of --top-k-sentences."),
    max_sentences: int = typer.Option(_DEFAULTS.m or 20, "--max-sentences", rich_help_panel=METHOD,
                                      help="At most this many sentences per class and set (never resampled)."),
    m_alias: Optional[int] = typer.Option(None, "--m", hidden=True, help="Old spelling of --max-sentences."),
    recipe: choice(available_recipes()) = typer.Option(
        _DEFAULT.recipe, "--recipe", rich_help_panel=TRAINING,
        help="Training recipe: fast (default) or paper (the reference's 400 epochs)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", rich_help_panel=TRAINING, help="Override the recipe's epochs."),
    lr: Optional[float] = typer.Option(None, "--lr", rich_help_panel=TRAINING, help="Override the recipe's learning rate."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", rich_help_panel=TRAINING,
                                             help="Override the recipe's batch size."),
    seed: int = typer.Option(0, "--seed", min=0, max=options.MAX_SEED, rich_help_panel=TRAINING,
                             help="Seed for the few-shot draw, initialisation and augmentation."),
    backbone: str = typer.Option("biomedclip", "--backbone", rich_help_panel=BACKBONE,
                                 help="Preset, hf-hub:ORG/REPO, local-dir:PATH, MODEL:TAG or MODEL:WEIGHTS."),
    device: options.Device = options.DeviceOption,
    allow_download: Optional[bool] = options.AllowDownloadOption,
    out: Optional[Path] = typer.Option(None, "--out", "-o", rich_help_panel=OUTPUT,
                                       help="Adapter file to write (default: <images>-<backbone>-<K>shot.safetensors)."),
    force: bool = options.ForceOption,
    json_out: bool = options.JsonOption,
) -> None:
    """Fit an adapter (VR patterns, expert weights, feature head, text banks) on K images per class; writes one .safetensors file."""
    from biomedvr_cli.cli import console as render
    from biomedvr_cli.pipeline.fit import FitRequest, fit_adapter

    spec, method_config, recipe_name, label = method_settings(ctx, attributes)
    out_path = out or options.default_adapter_name(images, backbone, shots)
    request = FitRequest(
        images=images, shots=shots, out=out_path, attributes=attributes, backbone=backbone, seed=seed,
        recipe=recipe_name, recipe_overrides={"epochs": epochs, "lr": lr, "batch_size": batch_size},
        method=method_config, scorer=spec.scorer, val_shots=val_shots, device=device, force=force, allow_fewer=allow_fewer,
        allow_download=allow_download,
        columns=csv_options.csv_columns(path_column, label_column, group_column, split_column),
        decode=options.decode_options(window, max_pixels),
    )
    _refuse_identifier_class_names(request)
    if out is None:
        render.info(f"adapter will be written to {out_path}")
    with render.EpochProgress("fit") as bar:
        result = fit_adapter(request, progress=bar.update, notify=render.info)
    for warning in result.warnings:
        render.warn(warning)
    if json_out:
        render.emit_json({**result.to_dict(), "method": label})
        return
    render.key_value_table(
        f"wrote {out_path}",
        [("classes", len(result.classes)), ("train / val images", f"{result.train_images} / {result.val_images}"),
         ("attributes", result.attribute_source), ("backbone", result.backbone), ("method", label),
         ("recipe", result.recipe), ("selected epoch", result.selected_epoch),
         (f"held-out accuracy ({result.estimate_kind})", "none: every labelled image was fitted (--val-shots 1 or "
          "more gives one)" if result.val_accuracy is None else result.val_accuracy), ("selection", result.selection_rule),
         ("VR stage", describe_vr(result.vr)), ("feature head", result.feature_head or "off"),
         ("seconds", round(result.seconds, 1))],
    )


def describe_vr(vr: dict | None) -> str:
    """One line on what the VR stage did: epochs run of planned, why it stopped, kept or not, its time."""
    if vr and vr.get("skipped"):
        return f"skipped: {vr['skipped']}"
    if not vr or not vr.get("ran"):
        return "did not run"
    stop = " (stopped early: validation stopped improving)" if vr["stopped_early"] else ""
    kept = f"kept epoch {vr['kept_epoch']}" if vr["kept"] else "not kept (the untrained views were better)"
    return f"ran {vr['epochs_run']} of {vr['epochs_planned']} epochs{stop}; {kept}; {vr['seconds']:.1f} s"


def method_settings(ctx: typer.Context, attributes: Path | None) -> tuple[MethodSpec, Any, str, str]:
    """The registry method, its config and recipe with the options given, and a label for the summary.

    A named method (``--method``, ``--paper``) refuses options that would change its settings
    (UsageError, exit 2); the default method takes them.
    """
    from biomedvr_cli.errors import UsageError

    name, named_by = _chosen_method(ctx)
    spec = _REGISTRY.methods[name]
    given = _given_settings(ctx)
    if named_by:
        clashes = conflicts(spec, {setting: value for setting, (value, _) in given.items()})
        if clashes:
            setting, value, fixed = clashes[0]
            spelling = given[setting][1]
            shown = spelling if ctx.params.get(_param_of(spelling)) is True else f"{spelling} {value}"
            raise UsageError(f"{shown} conflicts with {named_by}, which sets {setting} = {fixed}",
                             f"drop {spelling}, or leave out {named_by.split()[0]} and set the options one by one")
        if spec.scorer == "class-names" and attributes is not None:
            raise UsageError(f"--attributes conflicts with {named_by}, which scores against class-name templates",
                             f"drop --attributes, or choose a method that uses attributes (e.g. --method {_REGISTRY.default})")
    assert spec.config is not None and spec.recipe is not None
    fields = {setting: value for setting, (value, _) in given.items() if setting != "recipe"}
    try:
        config = replace(spec.config, **fields)
    except ValueError as exc:
        raise UsageError(str(exc), "see `biomedvr fit --help` for the allowed values") from None
    unused = unused_settings(config, fields)
    if unused:
        setting, why, (needed, value) = unused[0]
        enable = {"negative": "drop --no-negative", "confusion_loss": "drop --no-confusion-loss",
                  "feature_head": "drop --no-feature-head"}.get(needed, f"pass --{needed.replace('_', '-')} {value}")
        raise UsageError(f"{given[setting][1]} {why}, so it would change nothing",
                         f"drop {given[setting][1]}, or {enable}")
    changed = [spelling for setting, (value, spelling) in given.items() if value != spec.fixed_values()[setting]]
    label = name if not changed else f"{name} with {', '.join(changed)}"
    return spec, config, given.get("recipe", (spec.recipe, ""))[0], label


def _chosen_method(ctx: typer.Context) -> tuple[str, str]:
    """The method's name and how the user named it ("" when it is the default)."""
    from biomedvr_cli.errors import UsageError

    method, by_method, paper = ctx.params["method"], options.given(ctx, "method"), ctx.params["paper"]
    if paper and by_method and method != PAPER_METHOD:
        raise UsageError(f"--paper (--method {PAPER_METHOD}) conflicts with --method {method}",
                         "pass one of them")
    if paper:
        return PAPER_METHOD, f"--paper (--method {PAPER_METHOD})"
    return method, f"--method {method}" if by_method else ""


def _given_settings(ctx: typer.Context) -> dict[str, tuple[Any, str]]:
    """The settings set on the command line: setting -> (value, the option's spelling)."""
    from biomedvr_cli.errors import UsageError

    given: dict[str, tuple[Any, str]] = {}
    for param, (setting, spelling) in _SETTING_OPTIONS.items():
        if not options.given(ctx, param):
            continue
        value = ctx.params[param]
        value = not value if param in _OFF_SWITCHES else value
        if setting in given and given[setting][0] != value:
            raise UsageError(f"{given[setting][1]} {given[setting][0]} and {spelling} {value} disagree",
                             f"pass only {given[setting][1]} ({spelling} is its old spelling)")
        given[setting] = (value, spelling)
    return given


def _param_of(spelling: str) -> str:
    return next(param for param, (_, s) in _SETTING_OPTIONS.items() if s == spelling)


def _refuse_identifier_class_names(request) -> None:
    """Class names end up in the adapter: refuse identifier-like ones (exit 3) before any training.

    The adapter writer checks again; this check only moves the refusal ahead of the work.
    """
    from biomedvr_cli.attributes.privacy import check_stored_class_names
    from biomedvr_cli.data import open_source
    from biomedvr_cli.pipeline.fit_inputs import find_attributes

    find_attributes(request.images, request.attributes)  # an attributes.json folder is named, not taken for a class
    source = open_source(request.images, columns=request.columns)
    check_stored_class_names(source.classes, "class folder" if request.images.is_dir() else "label")


def register(app: typer.Typer) -> None:
    """Attach ``fit`` (its --help groups the options in panels: Data, Method, Training, Backbone, Output)."""
    app.command("fit", cls=options.PanelCommand)(fit)

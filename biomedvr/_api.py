"""The notebook API: fit, load, evaluate and load_backbone over ``biomedvr_cli.pipeline``.

Each function maps its arguments onto the pipeline call the command line makes (nothing of
the method lives here) and turns the pipeline's ``notify`` callback into Python's own
channels: plain notices go to the ``biomedvr`` logger (INFO), cautions (no attributes file,
skipped images, optimistic metrics) are raised as :class:`BiomedVRWarning` at the caller's
line. No call changes global state: torch/random/numpy generators and ``os.environ`` are
as they were afterwards.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from biomedvr_cli.pipeline.notices import LOGGER_NAME, Caution, warn_at_caller

_LOG = logging.getLogger(LOGGER_NAME)


class _Notices:
    """A call's notify callback: notices are logged, cautions warned at once at the caller's line (so that
    warnings made errors stop a fit before it trains or writes anything)."""

    def __init__(self) -> None:
        self.warned: set[str] = set()

    def __call__(self, message: str) -> None:
        if isinstance(message, Caution):
            self._warn(str(message))
        else:
            _LOG.info("%s", message)

    def _warn(self, message: str) -> None:
        if message not in self.warned:
            self.warned.add(message)
            warn_at_caller(message)

    def warn(self, extra: list[str] = ()) -> None:  # type: ignore[assignment]
        """Warn the result's warnings not warned already, at the user's call."""
        for message in dict.fromkeys(extra):
            self._warn(message)


def load_backbone(name: str = "biomedclip", *, offline: bool | None = None, device: str = "auto"):
    """Load a frozen backbone once, to pass as ``backbone=`` to :func:`fit` and :func:`load` (never reloaded).

    ``name``: a preset (``biomedclip``, ``clip-vit-b16``, ``sandbox``), ``hf-hub:ORG/REPO``,
    ``local-dir:DIR``, ``MODEL:TAG`` or ``MODEL:WEIGHTS``. ``offline=True`` never touches the
    network (a missing backbone is then an error with the commands that fetch it);
    ``offline=False`` allows a download; None (default) follows ``BIOMEDVR_ALLOW_DOWNLOAD`` and
    ``HF_HUB_OFFLINE``. Download notices go to the ``biomedvr`` logger.
    """
    from biomedvr_cli.backbones.downloads import DownloadReporter
    from biomedvr_cli.backbones.loader import load_backbone as load
    from biomedvr_cli.pipeline.arguments import as_flag, as_text
    from biomedvr_cli.pipeline.state import float32_default, preserved_rng, scoped_environ

    from biomedvr_cli.backbones.specs import BackboneSpec

    if not isinstance(name, BackboneSpec):  # a spec: the label an adapter stores, parsed by load()
        as_text(name, "backbone name", 'pass a backbone name, e.g. "biomedclip" (see `biomedvr backbones`)')
    as_text(device, "device", 'pass "auto", "cpu", "cuda" or "mps"')
    allow = None if offline is None else not as_flag(offline, "offline")
    # Loaders set variables (open_clip sets TOKENIZERS_PARALLELISM on import), and building a model
    # draws its random initial weights before the real ones are loaded: neither may leak to the caller.
    with scoped_environ(), preserved_rng(), float32_default():
        return load(name, device=device, allow_download=allow, reporter=DownloadReporter(notify=_log_info))


def _log_info(message: str) -> None:
    _LOG.info("%s", message)


def _backbone(value: Any, device: str, offline: bool | None):
    """A loaded backbone: ``value`` itself, or loaded by name through :func:`load_backbone`."""
    from biomedvr_cli.pipeline.arguments import check_backbone_argument

    from biomedvr_cli.backbones.specs import BackboneSpec

    check_backbone_argument(value)
    if isinstance(value, (str, BackboneSpec)):  # a name, or the backbone an adapter names (load without backbone=)
        return load_backbone(value, offline=offline, device=device)
    if device != "auto" and _device_type(device) != value.device.type:
        # A loaded backbone stays where it is: saying nothing would run on another device than asked.
        from biomedvr_cli.errors import UsageError

        kind = _device_type(device)
        if kind not in ("cpu", "cuda", "mps"):
            raise UsageError(f"unknown device {device!r}", 'use "auto", "cpu", "cuda" or "mps" (for another GPU than '
                                                            "the first, set CUDA_VISIBLE_DEVICES)")
        raise UsageError(f"the backbone is already loaded on {value.device.type}; device={device!r} cannot move it",
                         f"load it with biomedvr.load_backbone(name, device={kind!r}), or leave device out")
    return value


def _device_type(device: Any) -> str:
    """The kind of a device argument ("cuda:1" -> "cuda"); a malformed one is left for the loader to refuse."""
    return str(device).split(":", 1)[0].strip().lower()


def _request_options(options: dict[str, Any], attributes: Any = None) -> dict[str, Any]:
    """``fit``'s extra keywords as FitRequest fields: the method, recipe overrides, CSV and decoding options."""
    from biomedvr_cli.data import CsvColumns, DecodeOptions, parse_window
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.method.config import MethodConfig
    from biomedvr_cli.method.recipes import Recipe

    groups = {"method": {f.name for f in fields(MethodConfig)},
              "recipe_overrides": {f.name for f in fields(Recipe)} - {"name", "description"},
              "columns": {f"{f.name}_column" for f in fields(CsvColumns)},
              "decode": {f.name for f in fields(DecodeOptions)}}
    direct = {"recipe", "val_shots", "allow_fewer"}
    known = set().union(*groups.values(), direct, {"method"})
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"unknown option(s): {', '.join(unknown)}",
                         f"use one of {', '.join(sorted(known))} (docs/python-api.md)")
    request = {k: options[k] for k in direct if k in options}
    picked = {group: {k: v for k, v in options.items() if k in names} for group, names in groups.items()}
    request["method"], request["recipe"], request["scorer"] = _method(options.get("method"), picked["method"],
                                                                      options.get("recipe"), attributes)
    request["recipe_overrides"] = picked["recipe_overrides"]
    decode = dict(picked["decode"])
    if isinstance(decode.get("window"), str):  # "40,400", as --window takes it
        decode["window"] = parse_window(decode["window"])
    columns = {k[: -len("_column")]: v for k, v in picked["columns"].items()}
    if not all(v is None or (isinstance(v, str) and v) for v in columns.values()):
        raise UsageError("CSV column names must be non-empty strings", 'pass e.g. path_column="file", label_column="dx"')
    try:
        request["columns"] = CsvColumns(**columns)
        request["decode"] = DecodeOptions(**decode)
    except (TypeError, ValueError, IndexError) as exc:
        raise UsageError(f"bad decoding option ({exc})", 'pass max_pixels=64_000_000 and window="CENTER,WIDTH"') from None
    return request


def _method(method: Any, settings: dict[str, Any], recipe: Any, attributes: Any):
    """(MethodConfig, recipe name, scorer): a registry method by name fixes all three (a conflicting keyword is
    refused, as ``fit --method`` does); without one, the keywords change the registry's default method one by one."""
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.method.config import MethodConfig, unused_settings
    from biomedvr_cli.method.registry import conflicts, registry

    methods = registry()
    if isinstance(method, MethodConfig):
        spec = methods.methods[methods.default]
        base, default_recipe = method, spec.recipe
    elif method is None or isinstance(method, str):
        name = methods.default if method is None else method
        if name not in methods.fit_methods():
            raise UsageError(f"unknown method {name!r} for fit", f"choose one of {', '.join(methods.fit_methods())}")
        spec = methods.methods[name]
        clashes = conflicts(spec, {**settings, **({"recipe": recipe} if recipe is not None else {})})
        if method is not None and clashes:
            setting, value, fixed = clashes[0]
            raise UsageError(f"{setting}={value!r} conflicts with method={name!r}, which sets {setting} = {fixed!r}",
                             f"drop {setting}=, or leave out method= and set the options one by one")
        if method is not None and spec.scorer == "class-names" and attributes is not None:
            raise UsageError(f"attributes= conflicts with method={name!r}, which scores against class-name templates",
                             f"drop attributes=, or choose a method that uses attributes (e.g. {methods.default!r})")
        base, default_recipe = spec.config, spec.recipe
    else:
        raise UsageError(f"method must be a method name or a MethodConfig, got {type(method).__name__}",
                         f"pass method=\"{methods.default}\" (see `biomedvr benchmark --list-methods`), or settings as "
                         "keywords (vr=\"full\", k=3, ...)")
    try:
        config = replace(base, **settings)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc), "see docs/method.md for the allowed values") from None
    unused = unused_settings(config, settings)
    if unused:
        setting, why, (needed, value) = unused[0]
        raise UsageError(f"{setting}= {why}, so it would change nothing", f"drop {setting}=, or pass {needed}={value!r}")
    return config, recipe if recipe is not None else default_recipe, spec.scorer


def fit(images: Any, shots: int = 8, *, attributes: str | os.PathLike | None = None, backbone: Any = "biomedclip",
        seed: int = 0, out: str | os.PathLike | None = None, force: bool = False, device: str = "auto",
        offline: bool | None = None, progress: Callable | None = None, **options: Any):
    """Fit an adapter on ``shots`` images per class and return a :class:`Predictor` for it.

    ``images``: a class-per-folder tree or a CSV manifest (str or PathLike), or a list of
    ``(image, label)`` pairs (PIL images, numpy arrays or paths; labels are class names).
    ``attributes``: the attributes JSON (for a folder or CSV it is otherwise looked up as the
    command line does). ``backbone``: a name or :func:`load_backbone`'s result. ``out``: also
    write the adapter there (``force=True`` to replace a file). ``options``: method settings
    (``vr``, ``gate``, ``k``, ``feature_head``, ... or ``method=MethodConfig(...)``), recipe
    overrides (``epochs``, ``lr``, ``batch_size``, ...), ``method`` (a name of the method
    registry, e.g. ``"biomedvr-paper"``, as ``fit --method``), ``recipe``, ``val_shots``,
    ``allow_fewer``, ``path_column``/``label_column``/``split_column``/``group_column``,
    ``max_pixels``/``window``. ``progress`` is called with each epoch's report.
    """
    from biomedvr_cli.atomic import check_writable
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.pipeline.arguments import as_flag
    from biomedvr_cli.pipeline.fit import FitRequest, fit_adapter
    from biomedvr_cli.pipeline.predictor import predictor_for

    allow = None if offline is None else not as_flag(offline, "offline")
    if progress is not None and not callable(progress):  # else it fails only once an epoch is reported
        raise UsageError(f"progress must be a function or None, got {type(progress).__name__}",
                         "pass progress=print, or a function taking each epoch's report")
    request = FitRequest(images=images, shots=shots, out=out, attributes=attributes, backbone=backbone, seed=seed,
                         device=device, force=force, allow_download=allow, **_request_options(options, attributes))
    if request.out is not None:
        check_writable(request.out, force=request.force)  # before the backbone is loaded; fit reserves it later
    request.backbone = _backbone(request.backbone, request.device, offline)
    notices = _Notices()
    result = fit_adapter(request, progress=progress, notify=notices, before_write=notices.warn)
    predictor = predictor_for(result.adapter, request.backbone)
    predictor.fit_result, predictor.path = result, result.out
    notices.warn(result.warnings)
    return predictor


def load(path: str | os.PathLike, backbone: Any = None, *, device: str = "auto", offline: bool | None = None,
         accept_preprocessing: bool = False):
    """A :class:`Predictor` for an adapter file, on ``backbone`` (a name or a loaded one; default: the one it names).

    The adapter must match the backbone's weights and input size (else ``BackboneUnavailableError``
    or ``AdapterError``); another normalisation is refused unless ``accept_preprocessing=True``.
    """
    from biomedvr_cli.adapter import load_adapter
    from biomedvr_cli.pipeline.arguments import as_flag, as_path
    from biomedvr_cli.pipeline.predictor import backbone_for, predictor_for

    adapter = load_adapter(as_path(path, "path", 'pass the adapter file fit wrote, e.g. "derm.safetensors"'))
    accept = as_flag(accept_preprocessing, "accept_preprocessing")
    loaded = _backbone(backbone_for(adapter, backbone), device, offline)
    notices = _Notices()
    predictor = predictor_for(adapter, loaded, accept_preprocessing=accept, notify=notices)
    predictor.path = pathlib.Path(os.fspath(path))
    notices.warn()
    return predictor


def evaluate(images: Any, predictor: Any, *, split: str = "auto", plots: str | os.PathLike | None = None,
             force: bool = False, coverage: float | None = None, assurance: float | None = None,
             outliers: str | os.PathLike | None = None, **options: Any) -> dict[str, Any]:
    """Metrics of ``predictor`` on labelled ``images`` (a folder, a CSV, or (image, label) pairs).

    Returns what ``biomedvr eval --json`` prints: ``report["metrics"]`` has accuracy, balanced
    accuracy, macro-F1, AUROC, ECE, NLL, the confusion matrix and per-class rows. ``split``:
    auto (the test split when there is one), test, val, train or all. ``plots``: a folder for
    the confusion-matrix and reliability PNGs (existing ones need ``force=True``). ``options``:
    the CSV columns (``path_column``, ...) and decoding (``max_pixels``, ``window``). ``coverage``
    (a level in (0, 1), e.g. 0.9) adds the prediction sets' ``coverage`` and ``mean_set_size``, with
    ``assurance`` built at the level that assures it (docs/trust.md); ``outliers`` (a folder, file
    or CSV of images of another kind) adds ``outlier_auroc``; both as ``eval --coverage`` and
    ``--outliers``. Warnings in the report are also raised as BiomedVRWarning.
    """
    from biomedvr_cli.errors import UsageError
    from biomedvr_cli.pipeline.evaluate import evaluate_adapter
    from biomedvr_cli.pipeline.predictor import Predictor

    if not isinstance(predictor, Predictor):
        raise UsageError(f"predictor must be a Predictor, got {type(predictor).__name__}",
                         'pass the result of biomedvr.fit(...) or biomedvr.load("adapter.safetensors")')
    allowed = {"path_column", "label_column", "split_column", "max_pixels", "window"}
    if "group_column" in options:  # accepted and ignored, it would suggest that evaluate groups images
        raise UsageError("evaluate takes no group_column: it draws no images, so nothing is grouped",
                         "leave group_column out (it is for fit, whose draw keeps each patient on one side)")
    if set(options) - allowed:
        raise UsageError(f"unknown option(s) for evaluate: {', '.join(sorted(set(options) - allowed))}",
                         f"use one of {', '.join(sorted(allowed))}")
    request = _request_options({k: v for k, v in options.items()})
    report = evaluate_adapter(images, None, split=split, plots=plots, predictor=predictor, force=force,
                              columns=request["columns"], decode=request["decode"], coverage=coverage,
                              assurance=assurance, outliers=outliers)
    _Notices().warn(report["warnings"])
    return report

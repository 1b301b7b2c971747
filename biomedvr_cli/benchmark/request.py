"""From command-line values and an optional suite file to one ``BenchmarkRequest``.

The command line describes either one dataset (IMAGES with --test, --attributes, --name) or
points at a suite file listing several. Settings such as the backbone, methods, shots and
seeds can come from both: a value given on the command line wins, then the suite's, then
the default. Everything here is checked before any dataset or backbone is loaded: types,
the size limits of ``limits`` (so that no option or suite field can ask for unbounded memory
or time) and the identifier check on dataset names, which reach reports and job file names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from biomedvr_cli.attributes.privacy import check_stored_text
from biomedvr_cli.benchmark.limits import NAME_WHY, check_dataset_name, check_job_count, check_options
from biomedvr_cli.benchmark.methods import METHODS, Overrides, resolve_methods
from biomedvr_cli.benchmark.protocol import (
    DEFAULT_SEEDS,
    DEFAULT_SHOTS,
    DatasetSpec,
    Suite,
    is_task_file,
    load_suite,
    parse_shots,
    seed_list,
)
from biomedvr_cli.benchmark.runner import BenchmarkRequest
from biomedvr_cli.data import DecodeOptions, parse_window
from biomedvr_cli.errors import InvalidInputError, UsageError

T = TypeVar("T")

DEFAULT_BACKBONE = "biomedclip"
DEFAULT_METHODS = "all"
_DATA_FILE_SUFFIXES = {".csv", ".tsv", ".json", ".txt"}  # manifests and attributes files


@dataclass
class BenchmarkOptions:
    """The ``benchmark`` command line as given: None means "not given" (the suite or the default decides)."""

    out: Path
    images: Path | None = None
    test: Path | None = None
    attributes: Path | None = None
    suite: Path | None = None
    name: str | None = None
    backbone: str | None = None
    methods: str | None = None  # comma-separated methods or groups
    shots: str | None = None  # comma-separated shots
    seeds: int | None = None
    epochs: int | None = None
    epoch_scale: float | None = None
    batch_size: int | None = None
    val_shots: int | None = None
    allow_fewer: bool = False
    path_column: str = "path"
    label_column: str = "label"
    group_column: str | None = None
    split_column: str = "split"
    device: str = "auto"
    allow_download: bool | None = None
    force: bool = False
    window: str | None = None  # DICOM "CENTER,WIDTH"
    max_pixels: int = DecodeOptions.max_pixels


def _pick(cli: T | None, from_suite: T | None, default: T) -> T:
    """The command line's value, else the suite's, else the default."""
    if cli is not None:
        return cli
    return from_suite if from_suite is not None else default


def _datasets(options: BenchmarkOptions) -> tuple[list[DatasetSpec], Suite | None]:
    """The datasets to run, and the suite they came from (None for a single IMAGES dataset)."""
    if (options.images is None) == (options.suite is None):
        raise UsageError("give either IMAGES or --suite FILE",
                         "e.g. `biomedvr benchmark data/ --attributes a.json` or `--suite suite.json`")
    if options.suite is not None:
        if options.test is not None or options.attributes is not None or options.name is not None:
            raise UsageError("--test, --attributes and --name describe one dataset; with --suite put them in the suite file",
                             "move them into the suite's dataset entries")
        columns = [option for option, value, default in (
            ("--path-column", options.path_column, "path"), ("--label-column", options.label_column, "label"),
            ("--split-column", options.split_column, "split"), ("--group-column", options.group_column, None))
            if value != default]
        if columns:  # each dataset of a suite names its own columns; one option for all would be ignored
            raise UsageError(f"{', '.join(columns)} describe(s) one dataset's CSV; with --suite set them per dataset",
                             "put path_column, label_column, split_column or group_column (\"none\": no grouping) "
                             "in the suite's dataset entries")
        suite = load_suite(options.suite)
        return suite.datasets, suite
    images = options.images
    assert images is not None
    name = options.name or (images.resolve().stem if images.suffix.lower() == ".csv" else images.resolve().name) or "images"
    check_dataset_name(name, "--name" if options.name else "the dataset name (the IMAGES folder or file name)")
    return [DatasetSpec(name=name, images=images, test=options.test, attributes=options.attributes,
                        path_column=options.path_column, label_column=options.label_column,
                        group_column=options.group_column, split_column=options.split_column)], None


def _overrides(options: BenchmarkOptions, suite: Suite | None) -> Overrides:
    """Training overrides; --epochs and --epoch-scale exclude each other, and either replaces both of the suite's."""
    epochs, epoch_scale = options.epochs, options.epoch_scale
    if epochs is not None and epoch_scale is not None:
        raise UsageError("--epochs and --epoch-scale both set", "use one: --epochs N for all, or --epoch-scale F per recipe")
    if epoch_scale is not None and epoch_scale <= 0 or epochs is not None and epochs < 1:
        raise UsageError("--epochs must be at least 1 and --epoch-scale positive", "e.g. --epoch-scale 0.2")
    # A suite may set epochs or epoch_scale; one given on the command line replaces the suite's choice.
    suite_epochs = suite.epochs if suite and epoch_scale is None else None
    suite_scale = suite.epoch_scale if suite and epochs is None else None
    return Overrides(epochs=_pick(epochs, suite_epochs, None), epoch_scale=_pick(epoch_scale, suite_scale, None),
                     batch_size=options.batch_size)


def _check_file_names(datasets: list[DatasetSpec]) -> None:
    """The reports keep each dataset's file names (``DatasetSpec.describe``): no identifiers there either."""
    for i, spec in enumerate(datasets, start=1):
        task_file = Path(spec.sandbox_task) if spec.sandbox_task and is_task_file(spec.sandbox_task) else None
        for what, path in (("images", spec.images), ("test", spec.test), ("attributes", spec.attributes),
                           ("sandbox task", task_file)):
            if path is not None:  # "busi.csv" is a file name by design: its stem is what could hold an identifier
                name = path.stem if path.suffix.lower() in _DATA_FILE_SUFFIXES else path.name
                check_stored_text(f"dataset {i} ({spec.key}): the {what} file or folder name", name, why=NAME_WHY,
                                  fix="rename the file or folder after the dataset's task or source")


def _methods(options: BenchmarkOptions, suite: Suite | None) -> list[str]:
    """The methods of the run; a wrong name in the suite file is that file's error (exit 3, naming it)."""
    if options.methods is not None or suite is None or suite.methods is None:
        return resolve_methods(options.methods if options.methods is not None else DEFAULT_METHODS)
    try:
        return resolve_methods(suite.methods)
    except UsageError as exc:
        assert options.suite is not None
        raise InvalidInputError(f"{options.suite.name}: methods: {exc.message}", exc.hint) from None


def build_request(options: BenchmarkOptions) -> BenchmarkRequest:
    """Merge the command line with the suite file (command line wins) into a checked ``BenchmarkRequest``."""
    cli_shots = parse_shots(options.shots) if options.shots is not None else None
    check_options(shots=cli_shots, seeds=options.seeds, epochs=options.epochs, epoch_scale=options.epoch_scale,
                  batch_size=options.batch_size, val_shots=options.val_shots)
    datasets, suite = _datasets(options)
    _check_file_names(datasets)
    overrides = _overrides(options, suite)
    methods = _methods(options, suite)
    shots = parse_shots(_pick(cli_shots, suite.shots if suite else None, list(DEFAULT_SHOTS)))
    seed_count = _pick(options.seeds, suite.seeds if suite else None, DEFAULT_SEEDS)
    shot_free = sum(1 for m in methods if METHODS[m].shot_free)
    check_job_count(len(datasets), shot_free, len(methods) - shot_free, len(shots), seed_count)
    return BenchmarkRequest(
        datasets=datasets,
        out=options.out,
        backbone=_pick(options.backbone, suite.backbone if suite else None, DEFAULT_BACKBONE),
        methods=methods,
        shots=shots,
        seeds=seed_list(seed_count),
        overrides=overrides,
        val_shots=_pick(options.val_shots, suite.val_shots if suite else None, None),
        allow_fewer=options.allow_fewer,
        device=options.device,
        allow_download=options.allow_download,
        force=options.force,
        suite=options.suite,
        decode=DecodeOptions(window=parse_window(options.window) if options.window else None,
                             max_pixels=options.max_pixels),
    )

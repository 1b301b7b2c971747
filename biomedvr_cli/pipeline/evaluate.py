"""``eval`` as a library call: labelled images + adapter -> metrics (and plots)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from biomedvr_cli.atomic import refuse_folder_with_inputs, reserve_output, write_failed
from biomedvr_cli.backbones import Backbone
from biomedvr_cli.data import CsvColumns, DecodeOptions
from biomedvr_cli.data.hashing import pixel_hashes
from biomedvr_cli.errors import InvalidInputError, UsageError
from biomedvr_cli.method.metrics import PLOT_NAMES, compute_metrics, write_plots
from biomedvr_cli.pipeline.arguments import as_flag, as_optional_path, as_path
from biomedvr_cli.pipeline.fit_inputs import window_unused
from biomedvr_cli.pipeline.images import ImageInput, MemoryImages, images_argument, open_images
from biomedvr_cli.pipeline.predictor import Predictor, load_predictor
from biomedvr_cli.pipeline.state import float32_default
from biomedvr_cli.pipeline.trust import (add_trust_metrics, assess_outliers, check_assurance, check_level, outlier_files,
                                         require_calibration, sets_level)

SPLIT_CHOICES = ("auto", "test", "val", "train", "all")
# Below this many --outliers images the AUROC moves by 1/n with each image; it is reported with a caution.
MIN_OUTLIER_IMAGES = 20


def select_split(records: list, split: str) -> tuple[list, str]:
    """Records of the requested split; ``auto`` prefers the test split when there is one."""
    if split not in SPLIT_CHOICES:
        raise UsageError(f"unknown split {split!r}", f"choose one of {', '.join(SPLIT_CHOICES)}")
    if split == "auto":
        test = [r for r in records if r.split == "test"]
        return (test, "test split") if test else (list(records), "all images")
    if split == "all":
        return list(records), "all images"
    chosen = [r for r in records if r.split == split]
    if not chosen:
        raise InvalidInputError(f"the images have no {split!r} split", "use --split all, or add a split column/folder")
    return chosen, f"{split} split"


def _input_warnings(source, split: str, split_name: str) -> list[str]:
    """Rows or files the input listed but left out (as fit reports them), and an ``auto`` split that found
    no test image in an input that names splits (its test rows missing, say): all images are scored then."""
    warnings = [line for line in (source.skipped_summary(),) if line]
    named = sorted({r.split for r in source.records if r.split})
    if split == "auto" and split_name == "all images" and named:
        warnings.append(f"no test image was found (the input's splits: {', '.join(named)}), so all images are scored, "
                        "training ones included; check the test rows or folder, or pass --split")
    return warnings


def skipped_warning(failures: list[tuple[Path, str]], shown: int = 5) -> str:
    """One line naming the unreadable images that were left out and why (the first ``shown``, then a count)."""
    # Each reason already starts with the file's name (never its folder).
    reasons = [reason for _, reason in failures]
    more = f"; and {len(reasons) - shown} more" if len(reasons) > shown else ""
    return f"{len(reasons)} image(s) could not be read and were left out: " + "; ".join(reasons[:shown]) + more


def fitted_overlap(images: ImageInput, records: list, pixels: Any, training: Any) -> int:
    """How many of ``records`` (decoded as ``pixels``) the adapter was fitted or selected on.

    ``training`` is the adapter's training record: salted pixel hashes (data/hashing.py), or in
    adapters without a salt the hashes of the files.
    """
    fitted = set(training.image_hashes)
    if not fitted:
        return 0
    salt = training.image_hash_salt
    hashes = pixel_hashes(pixels, salt) if salt else images.hashes(records, sort=False)
    return sum(1 for h in hashes if h in fitted)


@contextlib.contextmanager
def reserved_plots(plots: Path | None, images: Path | None, adapter: Path | None, *, force: bool,
                   outliers: Path | None = None) -> Iterator[None]:
    """Hold the plot files for the whole run: never an input folder or file, existing ones only with ``force``.

    ``images`` and ``adapter`` are None for in-memory images and a fitted, not loaded, adapter;
    ``outliers`` is the ``--outliers`` folder or manifest (plots written there would be scored
    as outlier images by the next run).
    """
    with contextlib.ExitStack() as held:
        if plots is not None:
            roots = [root for root in (images, outliers) if root is not None]
            refuse_folder_with_inputs(plots, roots, [], option="--plots")
            for name in PLOT_NAMES:
                held.enter_context(reserve_output(plots / name, force=force, inputs=[images, adapter, outliers],
                                                  option="--plots"))
        yield


@float32_default()
def evaluate_adapter(
    images: Path | str | MemoryImages | list,
    adapter: Path | str | None,
    *,
    split: str = "auto",
    backbone: str | Backbone | None = None,
    device: str = "auto",
    allow_download: bool | None = None,
    columns: CsvColumns = CsvColumns(),
    decode: DecodeOptions = DecodeOptions(),
    plots: Path | str | None = None,
    predictor: Predictor | None = None,
    force: bool = False,
    coverage: float | None = None,
    outliers: Path | str | None = None,
    assurance: float | None = None,
) -> dict[str, Any]:
    """Metrics of ``adapter`` on the labelled ``images``; unknown classes are an input error.

    ``images``: a folder or CSV (str or Path) or (image, label) pairs. ``predictor`` may be
    passed when the caller already loaded the adapter (it is not reloaded; ``adapter`` may then
    be None). Every argument is checked before the first image is scored. ``plots`` (a folder)
    gets confusion_matrix.png and reliability.png; existing ones are replaced only with ``force``.
    ``coverage`` adds the prediction sets' coverage and size (with ``assurance``: of the sets built
    where this adapter's own coverage reaches ``coverage`` with that probability), ``outliers``
    (images of another kind) the outlier AUROC (docs/trust.md).
    """
    images, adapter, plots = _check_arguments(images, adapter, split, plots, predictor)
    coverage = None if coverage is None else check_level(coverage)
    assurance = check_assurance(assurance, coverage)
    folder = images if isinstance(images, Path) else None
    outliers = as_optional_path(outliers, "outliers", "pass a folder or CSV of images of another kind")
    with reserved_plots(plots, folder, adapter, force=as_flag(force, "force"), outliers=outliers):  # before any scoring
        source = open_images(images, columns)
        others = outlier_files(outliers, columns)
        if plots is not None:  # a manifest's images (or outlier images) in the --plots folder
            listed = [r.path for r in source.source.records] + list(others or [])
            refuse_folder_with_inputs(plots, [], listed, option="--plots")
        if predictor is None:
            predictor = load_predictor(adapter, backbone=backbone, device=device, allow_download=allow_download)
        notices = require_calibration(predictor, coverage=coverage, outliers_wanted=others is not None)
        level, level_warnings, level_note = sets_level(predictor, coverage, assurance)
        result = _evaluate(source, predictor, split, decode, coverage=coverage, level=level, others=others)
        notices += level_warnings
        result["notes"] = [level_note] if level_note else []
        if assurance is not None:  # no level assures it (too few images): the sets are full, built at no real level
            result["metrics"].update(coverage_assurance=assurance, sets_level=None if level_warnings else level)
        result["warnings"][:0] = notices
        named = adapter if adapter is not None else predictor.path  # a predictor loaded or saved from Python
        result["adapter"] = named.name if named is not None else None
        if plots is not None:
            try:
                result["plots"] = [str(p) for p in write_plots(result["metrics"], plots, force=as_flag(force, "force"))]
            except OSError as exc:  # the folder removed or changed meanwhile (each PNG is written atomically)
                raise write_failed(plots, exc) from None
    return result


def _evaluate(source: ImageInput, predictor: Predictor, split: str, decode: DecodeOptions, *,
              coverage: float | None = None, level: float | None = None,
              others: list[Path] | None = None) -> dict[str, Any]:
    """Score the split's images and compute the metrics (unknown classes and no readable image are input errors)."""
    classes = predictor.classes
    records, split_name = select_split(source.source.records, split)
    unknown = sorted({r.label for r in records} - set(classes))  # only the images scored: a train-only class is fine
    if unknown:
        raise InvalidInputError(
            f"class(es) not known to the adapter: {', '.join(unknown)}",
            f"evaluate only the adapter's classes ({', '.join(classes)})",
        )
    warnings = _input_warnings(source.source, split, split_name)
    # The outlier images first: none readable is an error before the evaluated images are scored.
    others_assessed = None if others is None else assess_outliers(predictor, others, decode=decode, warnings=warnings)
    if others and not isinstance(source, MemoryImages):  # in-memory images have no files to compare
        warnings += _outlier_overlap(others, records)
    batch = source.decode(records, predictor.image_size, decode)
    if batch.failures:
        warnings.append(skipped_warning(batch.failures))
    warnings += window_unused([records[i].path for i in batch.kept], decode)
    if not batch.kept:
        raise InvalidInputError("no readable images to evaluate", "check the image files")
    overlap = fitted_overlap(source, [records[i] for i in batch.kept], batch.images, predictor.adapter.config.training)
    if overlap:
        warnings.append(f"{overlap} of the {len(batch.kept)} evaluated images were used to fit or select this adapter, "
                        "so these metrics are optimistic; evaluate on images it has not seen (a test split)")
    labels = np.array([classes.index(records[i].label) for i in batch.kept])
    assessed = predictor.assess(batch.images, level)  # probabilities, sets (at the sets' level), outlier scores
    metrics = compute_metrics(labels, assessed.probs.numpy(), classes)
    add_trust_metrics(metrics, assessed, labels.tolist(), classes, coverage=coverage, others=others_assessed)
    few = metrics.get("outlier_images")
    if few is not None and few < MIN_OUTLIER_IMAGES:  # one image gives an AUROC of 0 or 1 by itself
        warnings.append(f"outlier_auroc rests on {few} image(s) of another kind: too few to say how well the flag "
                        f"separates them (use {MIN_OUTLIER_IMAGES} or more)")
    return {"adapter": None, "split": split_name, "metrics": metrics, "warnings": warnings,
            "selection": predictor.adapter.config.selection.rule}


def _outlier_overlap(others: list[Path], records: list) -> list[str]:
    """A warning when ``--outliers`` images are also evaluated images (the AUROC would compare them with themselves)."""
    from biomedvr_cli.data.manifest import same_file_key

    folders: dict[str, str] = {}
    evaluated = {same_file_key(r.path, folders) for r in records}
    both = sum(1 for p in others if same_file_key(p, folders) in evaluated)
    if not both:
        return []
    return [f"{both} of the {len(others)} --outliers images are also evaluated images, so outlier_auroc compares "
            "them with themselves; pass images of another kind"]


def _check_arguments(images: Any, adapter: Any, split: Any, plots: Any,
                     predictor: Any) -> tuple[Path | MemoryImages, Path | None, Path | None]:
    """Coerced ``images``, ``adapter`` and ``plots``; wrong types and values are refused before any work."""
    images = images_argument(images)
    if predictor is not None and not isinstance(predictor, Predictor):
        raise UsageError(f"predictor must be a loaded Predictor, got {type(predictor).__name__}",
                         "pass the result of biomedvr.load(...) or biomedvr.fit(...), or None")
    fix = "pass the .safetensors file `biomedvr fit` wrote"
    adapter = as_optional_path(adapter, "adapter", fix) if predictor is not None else as_path(adapter, "adapter", fix)
    if not isinstance(split, str) or split not in SPLIT_CHOICES:
        raise UsageError(f"unknown split {split!r}", f"choose one of {', '.join(SPLIT_CHOICES)}")
    return images, adapter, as_optional_path(plots, "plots", "pass the folder to write the plots to, or None")

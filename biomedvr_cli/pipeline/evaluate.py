"""``eval`` as a library call: labelled images + adapter -> metrics (and plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from biomedvr_cli.atomic import check_folder_writable, not_writable
from biomedvr_cli.data import CsvColumns, DecodeOptions, decode_to_tensors, open_source
from biomedvr_cli.errors import InvalidInputError, UsageError
from biomedvr_cli.method.metrics import compute_metrics, write_plots
from biomedvr_cli.pipeline.fit_inputs import image_hashes
from biomedvr_cli.pipeline.predictor import Predictor, load_predictor

SPLIT_CHOICES = ("auto", "test", "val", "train", "all")


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


def skipped_warning(failures: list[tuple[Path, str]], shown: int = 5) -> str:
    """One line naming the unreadable images that were left out and why (the first ``shown``, then a count)."""
    # Each reason already starts with the file's name (never its folder).
    reasons = [reason for _, reason in failures]
    more = f"; and {len(reasons) - shown} more" if len(reasons) > shown else ""
    return f"{len(reasons)} image(s) could not be read and were left out: " + "; ".join(reasons[:shown]) + more


def fitted_overlap(records: list, fitted_hashes: list[str]) -> int:
    """How many of ``records`` have the content of an image the adapter was fitted or selected on."""
    fitted = set(fitted_hashes)
    return sum(1 for h in image_hashes(records, sort=False) if h in fitted) if fitted else 0


def evaluate_adapter(
    images: Path,
    adapter: Path,
    *,
    split: str = "auto",
    backbone: str | None = None,
    device: str = "auto",
    allow_download: bool | None = None,
    columns: CsvColumns = CsvColumns(),
    decode: DecodeOptions = DecodeOptions(),
    plots: Path | None = None,
    predictor: Predictor | None = None,
) -> dict[str, Any]:
    """Metrics of ``adapter`` on the labelled ``images``; unknown classes are an input error.

    ``predictor`` may be passed when the caller already loaded the adapter (it is not reloaded).
    """
    if plots is not None:
        check_folder_writable(plots / "confusion_matrix.png")  # before any image is scored
    source = open_source(images, columns=columns)
    if predictor is None:
        predictor = load_predictor(adapter, backbone=backbone, device=device, allow_download=allow_download)
    classes = predictor.classes
    unknown = sorted({r.label for r in source.records} - set(classes))
    if unknown:
        raise InvalidInputError(
            f"class(es) not known to the adapter: {', '.join(unknown)}",
            f"evaluate only the adapter's classes ({', '.join(classes)})",
        )
    records, split_name = select_split(source.records, split)
    batch = decode_to_tensors([r.path for r in records], predictor.image_size, decode)
    warnings = []
    if batch.failures:
        warnings.append(skipped_warning(batch.failures))
    if not batch.kept:
        raise InvalidInputError("no readable images to evaluate", "check the image files")
    overlap = fitted_overlap([records[i] for i in batch.kept], predictor.adapter.config.training.image_hashes)
    if overlap:
        warnings.append(f"{overlap} of the {len(batch.kept)} evaluated images were used to fit or select this adapter, "
                        "so these metrics are optimistic; evaluate on images it has not seen (a test split)")
    labels = np.array([classes.index(records[i].label) for i in batch.kept])
    probs = predictor.probabilities(batch.images).numpy()
    metrics = compute_metrics(labels, probs, classes)
    result: dict[str, Any] = {"adapter": adapter.name, "split": split_name, "metrics": metrics, "warnings": warnings,
                              "selection": predictor.adapter.config.selection.rule}
    if plots is not None:
        try:
            result["plots"] = [str(p) for p in write_plots(metrics, plots)]
        except OSError as exc:  # disk full, or the folder changed meanwhile
            raise not_writable(plots, exc) from None
    return result

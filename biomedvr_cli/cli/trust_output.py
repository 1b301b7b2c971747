"""Prediction sets and outlier flags in ``predict``'s CSV and table, and ``eval``'s tables (docs/trust.md)."""

from __future__ import annotations

from typing import Any

import typer
from rich.text import Text

COVERAGE_HELP = ("Add each image's prediction set: the classes that hold the true class with this probability "
                 "(e.g. 0.9) when images are like the labelled ones (docs/trust.md).")
CoverageOption = typer.Option(None, "--coverage", help=COVERAGE_HELP)
EvalCoverageOption = typer.Option(
    None, "--coverage", help="Also report the coverage and mean size of the prediction sets at this level (e.g. 0.9).")
AssuranceOption = typer.Option(
    None, "--assurance", help="With --coverage: build the sets so that this adapter's own coverage reaches --coverage "
                              "with this probability (e.g. 0.9) over the draw of its labelled images; larger sets "
                              "(docs/trust.md).")
OutliersOption = typer.Option(
    None, "--outliers", help="Images of another kind (folder, file or CSV): report how well the outlier flag "
                             "separates them from the evaluated images (outlier_auroc).")


def trust_header(rows: list[dict[str, Any]]) -> list[str]:
    """The set and outlier columns the rows have (none for adapters without calibration, no set without --coverage)."""
    header = ["prediction_set"] if any("prediction_set" in r for r in rows) else []
    return header + (["outlier", "outlier_score"] if any("outlier" in r for r in rows) else [])


def trust_cells(row: dict[str, Any], header: list[str], *, table: bool = False) -> list[str]:
    """One row's cells for ``header``: the set joined by ';' (CSV) or ', ' (table), the flag and its score."""
    cells = []
    for name in header:
        value = row.get(name)
        if value is None:
            cells.append("")
        elif name == "prediction_set":
            cells.append(", ".join(value) if table else ";".join(_set_member(name) for name in value))
        elif name == "outlier":
            cells.append((Text("outlier", style="yellow") if value else "") if table else str(value).lower())
        else:
            cells.append(f"{value:.4f}" if table else f"{value:.6f}")
    return cells


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """``eval``'s extra scalar lines: coverage and set size, outlier AUROC and flag rates (those present)."""
    names = ("coverage_level", "coverage_assurance", "sets_level", "coverage", "mean_set_size", "outlier_auroc",
             "outlier_images", "outliers_flagged", "inliers_flagged")
    return [(name, metrics[name]) for name in names if name in metrics]


def per_class_columns(metrics: dict[str, Any]) -> list[str]:
    """``eval``'s extra per-class columns (with --coverage)."""
    return ["coverage", "mean_set_size"] if "coverage" in metrics else []


def _set_member(name: str) -> str:
    """A class name inside the CSV's ``;``-joined set: ``\\`` and ``;`` escaped with a backslash, so it splits back."""
    return name.replace("\\", "\\\\").replace(";", "\\;")

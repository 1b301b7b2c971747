"""Metrics and plots: accuracy, balanced accuracy, macro-F1, AUROC, ECE, NLL, per-class table.

scikit-learn computes the standard metrics; ECE (15 equal-width confidence bins) is the
one we compute ourselves because scikit-learn has no multi-class ECE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biomedvr_cli.atomic import atomic_path, signals_deferred

ECE_BINS = 15
# The scalar metrics every report shows, in this order (eval, benchmark jobs, demo).
SCALAR_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auroc_ovr", "ece", "nll")


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE with equal-width confidence bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per-bin confidence, accuracy and count (for the reliability diagram and JSON)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        count = int(in_bin.sum())
        out.append({"low": float(lo), "high": float(hi), "count": count,
                    "confidence": float(confidence[in_bin].mean()) if count else None,
                    "accuracy": float(correct[in_bin].mean()) if count else None})
    return out


def compute_metrics(labels: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """All reported metrics for integer ``labels`` and probabilities [N, C]."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    all_labels = list(range(len(classes)))
    present = sorted(set(y.tolist()))
    auroc: float | None
    try:
        if len(present) < 2:
            auroc = None
        elif len(classes) == 2:
            auroc = float(roc_auc_score(y, probs[:, 1]))
        else:
            # One-vs-rest over the classes present in the labels (absent ones have no positives).
            auroc = float(np.mean([roc_auc_score(y == c, probs[:, c]) for c in present]))
    except ValueError:
        auroc = None
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=all_labels, zero_division=0)
    return {
        "images": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": _balanced_accuracy(y, pred),
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "auroc_ovr": auroc,
        "ece": expected_calibration_error(probs, y),
        "nll": float(log_loss(y, np.clip(probs, 1e-12, 1.0), labels=all_labels)),
        "per_class": [
            {"class": c, "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
             "support": int(support[i])}
            for i, c in enumerate(classes)
        ],
        "confusion_matrix": confusion_matrix(y, pred, labels=all_labels).tolist(),
        "classes": list(classes),
        "reliability": reliability_bins(probs, y),
    }


def most_confused_pairs(matrix: Sequence[Sequence[int]], classes: Sequence[str], top: int = 3) -> list[tuple[str, str, int]]:
    """The largest off-diagonal cells: (true class, predicted class, count)."""
    cells = [(classes[i], classes[j], int(matrix[i][j])) for i in range(len(classes)) for j in range(len(classes))
             if i != j and matrix[i][j] > 0]
    return sorted(cells, key=lambda cell: -cell[2])[:top]


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y`` (scikit-learn's definition). Computed here: its
    function warns when one class is present or a prediction names a class absent from ``y``, and
    those warnings would reach the user as stray third-party ones."""
    y, pred = np.asarray(y), np.asarray(pred)
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


PLOT_NAMES = ("confusion_matrix.png", "reliability.png")


def write_plots(metrics: dict[str, Any], out_dir: Path, *, force: bool = True) -> list[Path]:
    """Confusion-matrix and reliability-diagram PNGs (no display needed); existing ones need ``force``.

    Both are written to temporary files first and renamed into place together (Ctrl-C or SIGTERM
    waits for the second rename): a full disk or an interruption leaves the previous pair (or
    none), never one new plot beside an old one."""
    figures = [_confusion_figure(metrics), _reliability_figure(metrics)]
    paths = [out_dir / name for name in PLOT_NAMES]
    with contextlib.ExitStack() as staged:  # an error names the file that failed; every temporary file goes
        for figure, path in zip(figures, paths):
            figure.savefig(staged.enter_context(atomic_path(path, force=force)), dpi=120, format="png")
        with signals_deferred():  # both written: renamed together, Ctrl-C held until the second is done
            staged.close()
    return paths


def _figure(size: tuple[float, float]) -> tuple[Any, Any]:
    """A figure drawn by the Agg canvas directly: no pyplot, so the user's backend (a notebook's
    inline one, say) and pyplot's figure list are left as they were."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _confusion_figure(metrics: dict[str, Any]) -> Any:
    classes = metrics["classes"]
    matrix = np.asarray(metrics["confusion_matrix"])
    fig, ax = _figure((1.2 + 0.7 * len(classes), 1.0 + 0.7 * len(classes)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_title(f"accuracy {metrics['accuracy']:.3f}")
    fig.tight_layout()
    return fig


def _reliability_figure(metrics: dict[str, Any]) -> Any:
    fig, ax = _figure((4.5, 4.5))
    bins = [b for b in metrics["reliability"] if b["count"]]
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    ax.bar(centres, [b["accuracy"] for b in bins], width=1 / ECE_BINS, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {metrics['ece']:.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig

"""When the VR stage stops early, and when it need not start at all.

Both save training that the selection would throw away: a trained epoch is kept only when it is
clearly better than the untrained start on validation (:func:`feature_head.clearly_better`).
"""

from __future__ import annotations

import torch

from biomedvr_cli.method.feature_head import clearly_better


class ValidationStall:
    """Counts validation checks in a row without a higher validation accuracy than the best so far.

    Accuracy only: the selector keeps a trained epoch only for a clear gain in images right, so
    a schedule whose validation NLL still falls while its accuracy stands still will not be kept
    and is not worth its time.
    """

    def __init__(self, patience: int | None) -> None:
        self.patience, self.best, self.since_best = patience, None, 0

    def record(self, scores: dict[str, float]) -> dict[str, float]:
        """Note one check's scores; returns them unchanged."""
        if self.best is None or scores["val_accuracy"] > self.best:
            self.best, self.since_best = scores["val_accuracy"], 0
        else:
            self.since_best += 1
        return scores

    @property
    def exhausted(self) -> bool:
        """True once ``patience`` checks in a row brought no higher accuracy."""
        return self.patience is not None and self.since_best >= self.patience


def why_no_epoch_can_pass(start_correct: torch.Tensor, z: float) -> str | None:
    """Why no trained epoch could pass the check against this start, or None when one could.

    The best any epoch can do is get right every validation image the start gets wrong and lose
    none; when even that is not clearly better (those mistakes number ``z`` squared or fewer),
    whatever training learns is thrown away, so skipping it gives the same adapter.
    """
    if clearly_better(torch.ones_like(start_correct), start_correct, z):
        return None
    wrong = int((~start_correct).sum())
    return (f"the untrained views get {wrong} of {start_correct.numel()} validation images wrong, "
            f"too few for a trained epoch to be clearly better at {z:g} standard errors")

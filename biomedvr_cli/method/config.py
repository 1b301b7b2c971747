"""Method settings as data, importable without torch (the CLI reads its defaults here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

VR_KINDS = ("padding", "full", "mask")
GATE_KINDS = ("global", "class", "sample")
COMBINE_KINDS = ("add", "subtract")


@dataclass(frozen=True)
class MethodConfig:
    """Every choice of the method; the reference's choices are the defaults named in method.md."""

    vr: str = "full"  # measured best on the sandbox (README); the reference uses "padding"
    vr_frame: int | None = None  # padding frame width in px; None = inner 6/7 of the input
    vr_eps: float = 0.25  # bound of the additive pattern for full/mask VR
    gate: str = "global"
    combine: str = "add"
    negative: bool = True
    confusion_loss: bool = True
    beta: float = 0.3
    margin: float = 0.5
    k: int = 3
    m: int | None = 20  # sentences used per class and set (never resampled)

    def __post_init__(self) -> None:
        if self.vr not in VR_KINDS:
            raise ValueError(f"unknown VR kind {self.vr!r}; choose from {', '.join(VR_KINDS)}")
        if self.gate not in GATE_KINDS:
            raise ValueError(f"unknown gate {self.gate!r}; choose from {', '.join(GATE_KINDS)}")
        if self.combine not in COMBINE_KINDS:
            raise ValueError(f"unknown combination {self.combine!r}; choose from {', '.join(COMBINE_KINDS)}")
        if self.k < 1 or (self.m is not None and self.m < 1):
            raise ValueError("k and m must be at least 1")
        if self.beta < 0 or self.margin < 0:
            raise ValueError("beta and margin must not be negative")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the adapter config."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodConfig:
        """Inverse of :meth:`to_dict`, ignoring unknown keys from newer minor versions."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

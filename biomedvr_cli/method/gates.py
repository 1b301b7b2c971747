"""Gates of the Mixture of Prompt Experts: how much each expert counts.

- ``global``: one learnable 2-vector shared by all samples and classes (the reference).
- ``class``: a 2-vector per class.
- ``sample``: a small MLP on the positive view's image feature.
Each returns softmax weights shaped to broadcast against [N, C] logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from biomedvr_cli.method.config import GATE_KINDS


class GlobalGate(nn.Module):
    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.softmax(self.weight, dim=0)
        return g[0], g[1]


class ClassGate(nn.Module):
    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_classes, 2))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.softmax(self.weight, dim=1)
        return g[:, 0].unsqueeze(0), g[:, 1].unsqueeze(0)


class SampleGate(nn.Module):
    def __init__(self, num_classes: int, feature_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        # Start equal-weighted like the global gate.
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.softmax(self.mlp(features.detach()), dim=1)
        return g[:, 0:1], g[:, 1:2]


class SignedWeight(nn.Module):
    """A signed weight on the negative expert, starting at 0 (``combine="signed"``).

    Returned as the pair (1, w) so that the fusion code is the same as for the softmax gates:
    ``z = pos + w * neg``. ``kind`` sets its shape like the gates: one scalar, one per class,
    or one per sample from a zero-initialised MLP on the positive feature.
    """

    def __init__(self, kind: str, num_classes: int, feature_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.kind = kind
        if kind == "sample":
            self.mlp = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)
        else:
            self.weight = nn.Parameter(torch.zeros(num_classes if kind == "class" else 1))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one = torch.ones((), device=features.device, dtype=features.dtype)
        if self.kind == "sample":
            return one, self.mlp(features.detach())
        return one, (self.weight.unsqueeze(0) if self.kind == "class" else self.weight[0])


def make_gate(kind: str, num_classes: int, feature_dim: int, *, signed: bool = False) -> nn.Module:
    """Build a gate by name: a softmax gate over the experts, or with ``signed`` a signed weight."""
    gates = {"global": GlobalGate, "class": ClassGate, "sample": SampleGate}
    if kind not in gates:
        raise ValueError(f"unknown gate {kind!r}; choose from {GATE_KINDS}")
    if signed:
        return SignedWeight(kind, num_classes, feature_dim)
    return gates[kind](num_classes, feature_dim)

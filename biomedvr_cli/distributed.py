"""Scale-out under ``torchrun``: rank/world from the environment, sharding, gathering to rank 0.

Nothing here does anything in a plain single process: ``torch.distributed`` is only
initialised when ``WORLD_SIZE > 1`` (gloo on CPU, nccl on CUDA; Python objects always
travel over a gloo group so that results can be gathered on any backend). Item ``i``
of a work list goes to rank ``i % world`` (``shard``, for equal-cost items such as
predict's batches), or items are spread by estimated cost (``shard_by_cost``, for the
benchmark's jobs, whose costs differ by orders of magnitude); rank 0 gathers everything
after the others are done and writes the merged outputs.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from biomedvr_cli.errors import UsageError

T = TypeVar("T")
TIMEOUT_ENV = "BIOMEDVR_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 24 * 3600  # ranks wait at the final gather for the slowest shard


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _timeout_seconds() -> int:
    """``BIOMEDVR_DIST_TIMEOUT_S``: whole seconds above zero; another value is a usage error (exit 2)."""
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{TIMEOUT_ENV}={value[:40]!r} is not a whole number of seconds above 0",
                         f"unset it (default {DEFAULT_TIMEOUT_S} s) or set it to, say, 3600")
    return int(value)


@dataclass
class DistContext:
    """This process's place in the run; a single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    _object_group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, items: Sequence[T], chunk: int = 1) -> list[T]:
        """This rank's items: chunk ``i`` (of ``chunk`` consecutive items) goes to rank ``i % world``.

        With ``chunk`` equal to a batch size, every batch holds the same items as in a
        single process, so batched numerics match it exactly.
        """
        return [item for i, item in enumerate(items) if (i // chunk) % self.world == self.rank]

    def shard_by_cost(self, items: Sequence[T], costs: Sequence[float]) -> list[T]:
        """This rank's items under :func:`balanced_assignment`, in their original order."""
        owners = balanced_assignment(costs, self.world)
        return [item for item, owner in zip(items, owners) if owner == self.rank]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (in rank order), None elsewhere; a barrier for all."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        received: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(obj, received, dst=0, group=self._object_group)
        return received

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier(group=self._object_group)

    def close(self) -> None:
        """Leave the process group (only if this module created it)."""
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def balanced_assignment(costs: Sequence[float], world: int) -> list[int]:
    """The rank of each item: longest first, each to the least-loaded rank (ties: lower rank).

    Deterministic from the costs alone, so every rank computes the same assignment without
    talking to the others. Greedy longest-first keeps the slowest rank within 4/3 of the
    best possible finish time, where ``i % world`` can leave one rank with all the long items.
    """
    loads = [0.0] * max(1, world)
    owners = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(len(loads)), key=lambda r: (loads[r], r))
        owners[i] = rank
        loads[rank] += costs[i]
    return owners


def merge_shards(parts: Sequence[Sequence[T]], chunk: int = 1) -> list[T]:
    """Undo :meth:`DistContext.shard` (same ``chunk``): the items back in their original order."""
    world = len(parts)
    total = sum(len(p) for p in parts)
    taken = [0] * world
    merged: list[T] = []
    for i in range(total):
        rank = (i // chunk) % world
        merged.append(parts[rank][taken[rank]])
        taken[rank] += 1
    return merged


def init_distributed(device: str = "auto") -> DistContext:
    """Read RANK/WORLD_SIZE/LOCAL_RANK; join the process group when there is more than one process."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world <= 1:
        return DistContext()
    import torch
    import torch.distributed as dist

    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    timeout = datetime.timedelta(seconds=_timeout_seconds())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timeout)
    group = dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else None
    return DistContext(rank=rank, world=world, local_rank=local_rank, backend=backend, _object_group=group)


def rank_device(ctx: DistContext, device: str):
    """The device this rank should use: its own GPU (LOCAL_RANK) under torchrun with CUDA, else ``device``."""
    if ctx.active and ctx.backend == "nccl":
        import torch

        return torch.device("cuda", ctx.local_rank)
    return device

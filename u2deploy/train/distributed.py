"""Process-group setup and the few collectives the trainer needs, for one process or many.

`torchrun --nproc-per-node N -m u2deploy train ...` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; `init_distributed` reads them and picks gloo on CPU and nccl on CUDA. Without
them everything here degrades to a single process and the collectives become no-ops, so the
trainer has a single code path.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from ..errors import UnsupportedOptionError

__all__ = ["DistInfo", "init_distributed", "shutdown_distributed", "ResumableSampler", "all_reduce_sum",
           "gather_objects", "barrier", "resolve_device"]  # fmt: skip


@dataclass(frozen=True)
class DistInfo:
    """Who this process is: rank, number of processes, device and the process-group backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """`auto` -> this process's CUDA device when there is one, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UnsupportedOptionError("--device cuda asked for, but this PyTorch has no CUDA device; use --device cpu")
        return torch.device("cuda", local_rank) if device == "cuda" else torch.device(device)
    if device != "cpu":
        raise UnsupportedOptionError(f"--device {device}: use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment, or run as a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistInfo(device=target)
    backend = "nccl" if target.type == "cuda" else "gloo"
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, device_id=target if target.type == "cuda" else None)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, target, backend)


def shutdown_distributed() -> None:
    """Leave the process group, if this process joined one (also after a failed setup)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a small tensor over all processes (a copy; identity on one process)."""
    if not info.distributed:
        return values
    reduced = values.detach().clone().to(info.device if info.backend == "nccl" else "cpu")
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.cpu()


def gather_objects(obj: Any, info: DistInfo) -> list[Any] | None:
    """Every process's `obj` on rank 0 (in rank order); None on the other ranks."""
    if not info.distributed:
        return [obj]
    gathered = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` (shuffle by seed + epoch, shard i::N) that can start part-way into an epoch.

    With one process it is a plain seeded shuffle. Samples are padded by repetition so every rank
    gets the same count, as `DistributedSampler` does with drop_last=False.
    """

    def __init__(self, dataset: Any, info: DistInfo, shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed,
                         drop_last=False)  # fmt: skip
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first `start` indices of this rank's shard in the current epoch."""
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)

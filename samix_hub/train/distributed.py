"""Process-group set-up under ``torchrun`` and the few collectives the loop needs.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything is a no-op on one process.
Under ``torchrun --nproc-per-node N -m samix_hub train ...``: NCCL on CUDA, gloo on CPU, one
device per local rank; rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from samix_hub.errors import UserError

__all__ = [
    "DistInfo",
    "torchrun_env",
    "is_main_process",
    "init_distributed",
    "all_reduce_sum",
    "broadcast_buffers",
    "barrier",
    "resolve_device",
]


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment: (0, 1, 0) without it; the
    local rank defaults to the rank (one machine)."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return rank, world, int(os.environ.get("LOCAL_RANK", str(rank)))


def is_main_process() -> bool:
    """True on rank 0 of a torchrun job, and in a process started without torchrun."""
    return torchrun_env()[0] == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes; pick this rank's device."""
    rank, world, local_rank = torchrun_env()
    if world <= 1:
        return DistInfo(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (identity on one process)."""
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


@torch.no_grad()
def broadcast_buffers(modules: list[torch.nn.Module | None], info: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank: before evaluating, so that the
    sharded evaluation scores exactly the weights rank 0 checkpoints."""
    if not info.enabled:
        return
    for module in modules:
        if module is not None:
            for buf in module.buffers():
                dist.broadcast(buf, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """``auto`` -> cuda when a GPU is available, else cpu; ``cuda`` without a GPU is a
    :class:`~samix_hub.errors.UserError` naming ``option``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{option} {name}: no GPU is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"{option} {name!r}: not a device (auto, cpu, cuda or cuda:N)") from None

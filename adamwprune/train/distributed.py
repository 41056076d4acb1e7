"""DDP set-up for ``torchrun``: one process per device, gloo on CPU, nccl on CUDA.

Without torchrun (no WORLD_SIZE > 1 in the environment) everything here is a
no-op and the run is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from adamwprune.errors import UserError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    node: int = 0  # torchrun's GROUP_RANK: this node's index among the run's nodes (global rank 0's is 0)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device_type(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"


def resolve_device(preference: str) -> str:
    """``auto`` picks cuda when available; asking for cuda without one is a user error."""
    import torch

    choice = (preference or "auto").strip().lower()
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("device 'cuda' was requested but no CUDA GPU is available; "
                            "use --device cpu or --device auto")
        return choice
    if choice == "cpu":
        return "cpu"
    raise UserError(f"unknown device {preference!r}; choose auto, cpu or cuda")


def launched_world_size() -> int:
    """The processes of this run: torchrun's WORLD_SIZE (1 without torchrun), readable before the
    process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_preference: str) -> DistContext:
    """Join the process group torchrun set up (if any) and pick this process's device."""
    device = resolve_device(device_preference)
    world_size = launched_world_size()
    if world_size <= 1:
        return DistContext(device=device)

    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device,
                       node=int(os.environ.get("GROUP_RANK", "0")))


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast_int(ctx: DistContext, value: int) -> int:
    """Rank 0's ``value`` on every rank (used for decisions only rank 0 can make)."""
    if not ctx.distributed:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.int64, device=ctx.device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def all_reduce_mean(ctx: DistContext, tensor: Any) -> Any:
    """The mean of ``tensor`` over all ranks (``tensor`` itself without DDP); every rank must call it."""
    if not ctx.distributed:
        return tensor
    import torch.distributed as dist

    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / ctx.world_size


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list without DDP)."""
    if not ctx.distributed:
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. a run name that contains a timestamp)."""
    if not ctx.distributed:
        return obj
    import torch.distributed as dist

    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]

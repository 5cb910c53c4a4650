"""The data-parallel process group as a training run sees it: its rank and size, this
process's device, joining torchrun's group, and averaging scalars over the ranks."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised ``torch.distributed`` group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def pick_device(name: str) -> torch.device:
    """``GENERAL.device``: ``auto`` = cuda when available, else cpu. Data-parallel, ``cuda``
    means this process's GPU: ``cuda:$LOCAL_RANK`` (torchrun, Ray Train), else the current
    CUDA device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and world()[1] > 1:
        local = os.environ.get("LOCAL_RANK")
        return torch.device("cuda", int(local) if local else torch.cuda.current_device())
    return torch.device(name)


def init_distributed(device_name: str) -> bool:
    """Join torchrun's process group (``WORLD_SIZE`` > 1 in the environment; not yet
    initialised): nccl when training on CUDA, else gloo. Returns whether it did."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalars averaged over the ranks (one all-reduce; as is without a process group)."""
    stacked = torch.stack([v.detach().float() for v in values.values()])
    if world()[1] > 1:
        dist.all_reduce(stacked)
        stacked /= world()[1]
    return dict(zip(values, stacked.tolist(), strict=True))

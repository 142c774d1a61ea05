"""Where this process stands under torchrun, for the model-side stages (encode, faithfulness):
its rank and the number of ranks, a barrier, and the process group joined for a stage's run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist


def rank_and_size() -> tuple[int, int]:
    """(rank, number of ranks): the process group's where one is joined, else torchrun's RANK and
    WORLD_SIZE (0, 1 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def barrier() -> None:
    """Wait for every rank (nothing outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def torchrun_group(device: torch.device) -> Iterator[None]:
    """Inside: the torchrun process group, joined here if there is one and none is joined yet
    (gloo on CPU, nccl on CUDA, this rank's GPU made current so that collectives use it) and
    left on the way out; outside torchrun, nothing."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or not dist.is_available() or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device.index if device.index is not None else int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()

"""DistributedDataParallel plumbing: torchrun detection, process group, wrap/unwrap, reductions.

Under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE > 1`` in the environment) the process group is
initialised once (gloo on CPU, NCCL on GPU), each rank trains on its shard of every global batch, DDP
averages the gradients, and only rank 0 logs and writes files. Outside torchrun everything here is a
no-op, so the same code runs on one process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` → ``cuda:LOCAL_RANK`` when a GPU is present, else CPU; other names as given."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return device


def init(device: torch.device) -> DistInfo:
    """Initialise the process group when run under torchrun (idempotent); returns this rank's info."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    log.info("DDP: rank %d of %d (%s backend)", info.rank, info.world_size, backend)
    if not info.is_main:  # only rank 0 logs progress; the others still report warnings and errors
        logging.getLogger("netgrow").setLevel(logging.WARNING)
    return info


def wrap(model: nn.Module, info: DistInfo, device: torch.device, sync_batchnorm: bool = False) -> nn.Module:
    """Wrap in DistributedDataParallel when distributed (rank 0's weights are broadcast to all ranks).

    ``sync_batchnorm``: BatchNorm normalises each training batch with the statistics of the whole global
    batch (all ranks) instead of the rank's shard, so a DDP run matches one process on the same global
    batch. The user's model keeps its BatchNorm classes (growth, ``netgrow.save`` and the model families
    see no difference): DDP wraps :func:`netgrow.train.sync_batchnorm.sync_batchnorm_view` of it, rebuilt at every stage, so the option
    holds across growth steps.
    """
    if not info.enabled:
        return model
    if sync_batchnorm:
        from netgrow.train.sync_batchnorm import sync_batchnorm_view

        model = sync_batchnorm_view(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP and/or ``torch.compile`` wrapper."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op on one process); returns it."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's boolean, on every rank (so all ranks take the same branch)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op on one process)."""
    if info.enabled:
        dist.barrier()

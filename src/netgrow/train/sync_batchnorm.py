"""BatchNorm over the global batch under DDP (``TrainConfig(sync_batchnorm=True)``).

Plain DDP normalises each rank's shard of the global batch with that shard's own mean and variance, so a
2-rank run computes a different function during training than one process on the same global batch
(and ends at different weights). With ``sync_batchnorm`` every BatchNorm layer uses the statistics of the
whole global batch: torch's ``nn.SyncBatchNorm`` on GPUs, and on the CPU (gloo, where torch's layer
refuses to run) :class:`GlobalBatchNorm`, which all-reduces the per-channel sums with the differentiable
``torch.distributed.nn.functional.all_reduce``. The result matches one process to float rounding.

The user's model is not converted: DDP wraps a *view* of it (:func:`sync_batchnorm_view`) whose
BatchNorm layers are replaced by synchronised ones holding the very same parameter and running-statistics
tensors. The view is rebuilt at every stage, so it covers the layers a growth step added, and the grown
model saves, loads and grows as plain BatchNorm.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over all DDP ranks (any device)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dtype = x.dtype
        if dtype not in (torch.float32, torch.float64):  # sums over the global batch in at least float32
            x = x.float()
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        # two passes (mean, then squared deviations): as accurate as one process's variance
        sums = all_reduce(torch.cat([x.sum(dims), local]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.reshape(shape)
        var = all_reduce(centred.pow(2).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[operator]
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp(min=1), alpha=m)
        y = centred / torch.sqrt(var + self.eps).reshape(shape)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y.to(dtype)


def sync_batchnorm_view(model: nn.Module) -> nn.Module:
    """A copy of the module tree in which every BatchNorm is synchronised over the DDP ranks, sharing its
    parameters and running statistics (the same tensor objects): training the view trains ``model``."""
    if isinstance(model, nn.modules.batchnorm._BatchNorm) and not isinstance(model, (nn.SyncBatchNorm, GlobalBatchNorm)):
        on_gpu = any(t.is_cuda for t in model.parameters()) or any(t.is_cuda for t in model.buffers())
        cls = nn.SyncBatchNorm if on_gpu else GlobalBatchNorm
        sync = cls.__new__(cls)
        nn.Module.__init__(sync)
        sync.__dict__.update({k: v for k, v in model.__dict__.items() if k not in ("_modules",)})
        sync._modules = {}
        if on_gpu:
            sync.process_group = None  # type: ignore[attr-defined]
        return sync
    view = copy.copy(model)  # shares the _parameters/_buffers dicts; only the children are replaced
    view._modules = {name: (sync_batchnorm_view(m) if m is not None else None) for name, m in model._modules.items()}
    return view

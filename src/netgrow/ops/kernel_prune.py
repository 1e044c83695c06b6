"""Kernel-level L1 pruning (Feng & Panda, section IV.B / Table 2 read literally): R = pruned 2-D kernels over
all kernels of the conv layers.

Every 2-D kernel ``W[o, i, :, :]`` of every ``nn.Conv2d`` is ranked by its L1 norm across **all** conv
layers together; the ``round(ratio * total)`` smallest are set to zero. Widths do not change (the paper's
parameter counts, 15.41 M = 20.04 M - 0.5 x 9.22 M, imply exactly this), so the returned masks are what
the Trainer holds at zero through the next stage and what ``count_macs(..., masks=masks)`` skips: the
MACs drop by the masked kernels' work exactly. Ties at the threshold are broken by position (stable), so
exactly ``round(ratio * total)`` kernels go.

Example::

    >>> import torch
    >>> from torch import nn
    >>> m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3))
    >>> pruned, masks = prune_kernels(m, 0.5)
    >>> sum(int(v.sum()) for v in masks.values()) // 9   # 12 kernels (3x2 + 2x3), half of them masked
    6
    >>> sum(int((pruned[i].weight.abs().sum((2, 3)) == 0).sum()) for i in (0, 2))
    6
"""

from __future__ import annotations

import copy
import numbers

import torch
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError


def kernel_norms(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{conv weight name: (out, in) L1 norm of each 2-D kernel}`` for every ``nn.Conv2d`` (groups=1 or not)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[f"{name}.weight" if name else "weight"] = m.weight.detach().abs().sum(dim=(2, 3)).double().cpu()
    return out


def prune_kernels(model: nn.Module, ratio: float) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``model`` with the ``ratio`` fraction of smallest-L1 2-D conv kernels (over all conv layers)
    set to zero, and ``{param name: bool mask}`` of the zeroed entries (True = held at zero).

    ``model`` is not modified. ``ratio`` in [0, 1).
    """
    if not isinstance(model, nn.Module):
        raise NetgrowTypeError(f"prune_kernels: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= float(ratio) < 1.0:
        raise NetgrowValueError(f"prune_kernels: ratio must be a number in [0, 1) (e.g. 0.5), got {ratio!r}")
    norms = kernel_norms(model)
    if not norms:
        raise NetgrowValueError(
            f"prune_kernels: {type(model).__name__} has no nn.Conv2d layer; kernel pruning needs 2-D convolutions"
        )
    flat = torch.cat([v.flatten() for v in norms.values()])
    k = int(round(float(ratio) * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.sort(flat, stable=True).indices
        chosen[order[:k]] = True
    new = copy.deepcopy(model)
    params = dict(new.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    start = 0
    for name, n in norms.items():
        sel = chosen[start : start + n.numel()].view(n.shape)
        start += n.numel()
        w = params[name]
        mask = sel[:, :, None, None].expand_as(w).to(w.device).clone()
        if bool(mask.any()):
            with torch.no_grad():
                w.masked_fill_(mask, 0.0)
            masks[name] = mask
    return new, masks

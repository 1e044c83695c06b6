"""Layer factories and the residual basic block: what ``netgrow.ops.deepen`` inserts and the model
families (``netgrow.models``, a layer above) build from.

``dim`` selects the layer flavour everywhere: 0 = Linear/BatchNorm1d on (N, F), 1 = Conv1d/BatchNorm1d on
(N, C, L), 2 = Conv2d/BatchNorm2d on (N, C, H, W).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_BATCHNORM = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}


def conv(
    dim: int, in_ch: int, out_ch: int, kernel_size: int | tuple[int, ...] = 3, stride: int = 1, bias: bool = True
) -> nn.Module:
    """A ``dim``-D convolution with "same" padding for odd kernels (``dim=0``: a Linear layer)."""
    if dim == 0:
        return nn.Linear(in_ch, out_ch, bias=bias)
    if dim not in (1, 2):
        raise ValueError(f"dim must be 0 (Linear), 1 (Conv1d) or 2 (Conv2d), got {dim}")
    k = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * dim
    padding = tuple(s // 2 for s in k)
    cls = nn.Conv1d if dim == 1 else nn.Conv2d
    return cls(in_ch, out_ch, k, stride=stride, padding=padding, bias=bias)


def batchnorm(dim: int, channels: int, eps: float = 1e-5, momentum: float | None = 0.1) -> nn.Module:
    """The BatchNorm that fits a ``dim``-D layer's output."""
    return _BATCHNORM[dim](channels, eps=eps, momentum=momentum)


class BasicBlock(nn.Module):
    """The residual basic block of He et al. (2016): conv-BN-act-conv-BN plus a shortcut, then act.

    The shortcut is the identity when shapes match, otherwise option B of the paper: a 1x1 convolution
    with stride plus BatchNorm (a projection the channel-group engine can widen, unlike zero padding).
    ``bn=False`` drops both BatchNorms (the convs then get biases); ``final_act=False`` drops the
    activation after the add. ``act`` is copied for both activation slots (default ReLU).

        >>> BasicBlock(16, 32, stride=2)(torch.zeros(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        dim: int = 2,
        act: nn.Module | None = None,
        bn: bool = True,
        final_act: bool = True,
        kernel_size: int | tuple[int, ...] = 3,
    ):
        super().__init__()
        act = act if act is not None else nn.ReLU()
        self.conv1 = conv(dim, in_ch, out_ch, kernel_size, stride, bias=not bn)
        self.bn1 = batchnorm(dim, out_ch) if bn else nn.Identity()
        self.act1 = copy.deepcopy(act)
        self.conv2 = conv(dim, out_ch, out_ch, kernel_size, 1, bias=not bn)
        self.bn2 = batchnorm(dim, out_ch) if bn else nn.Identity()
        if stride != 1 or in_ch != out_ch:
            proj = conv(dim, in_ch, out_ch, 1, stride, bias=not bn)
            self.shortcut: nn.Module = nn.Sequential(proj, batchnorm(dim, out_ch)) if bn else proj
        else:
            self.shortcut = nn.Identity()
        self.act2 = copy.deepcopy(act) if final_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))

"""FGSM, the fast gradient sign method (Goodfellow et al. 2015), white-box against the model attacked.

``x_adv = clip(x + ε · sign(∇ₓ L(model(x), y)))`` with ``L`` the cross-entropy of the model's logits,
computed in eval mode (BatchNorm uses running statistics, dropout is off). The loss is *summed* over the
batch, so every example's gradient is its own loss's gradient whatever the batch size (a mean would
only rescale it; the sign is the same).

ε and the clip bounds are in the units of ``x``. With normalised inputs ``x = (raw − mean) / std`` the
valid range of a raw [0, 1] image is ``[(0 − mean)/std, (1 − mean)/std]`` per channel: pass
``clip=normalized_bounds(mean, std)``. An ε given in raw pixel units is ``ε / std`` per channel in
normalised units; to attack with a raw-unit ε, wrap the model with :class:`Normalized` and attack the
raw inputs with ``clip=(0.0, 1.0)`` (this is what ``analyze_run`` does). ``clip=None`` disables clipping.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netgrow.analysis._common import (
    DEFAULT_BATCH_SIZE,
    sweep_bar,
    Data,
    check_labels,
    check_levels,
    check_xy,
    eval_mode,
    iter_batches,
    to_model,
)
from netgrow.errors import NetgrowTypeError, NetgrowValueError

log = logging.getLogger(__name__)

Bound = float | torch.Tensor
Clip = tuple[Bound, Bound] | None


def normalized_bounds(mean: Sequence[float] | float, std: Sequence[float] | float, low: float = 0.0,
                      high: float = 1.0, ndim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel clip bounds in normalised units for raw inputs in ``[low, high]``.

    Returns two tensors of shape ``(C, 1, …, 1)`` (``ndim − 2`` trailing ones) that broadcast against a
    batch ``(N, C, …)`` of ``ndim`` dimensions.

        >>> lo, hi = normalized_bounds([0.5], [0.25])
        >>> float(lo), float(hi), tuple(lo.shape)
        (-2.0, 2.0, (1, 1, 1))
    """
    m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
    s = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
    if m.shape != s.shape or bool((s <= 0).any()):
        raise NetgrowValueError(
            f"netgrow.analysis.normalized_bounds: need one positive std per mean, got mean={mean!r} std={std!r}"
        )
    shape = (-1,) + (1,) * max(ndim - 2, 0)
    return ((low - m) / s).reshape(shape), ((high - m) / s).reshape(shape)


class Normalized(nn.Module):
    """``model((x − mean) / std)``: lets an attack work on raw inputs (ε and clip in raw units).

    ``mean``/``std`` are per-channel sequences (broadcast over the channel dimension 1).
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        self.register_buffer("mean", m, persistent=False)
        self.register_buffer("std", s, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = self.mean.to(device=x.device, dtype=x.dtype).view(shape)
        std = self.std.to(device=x.device, dtype=x.dtype).view(shape)
        return self.model((x - mean) / std)


def _check_eps(eps: Any, where: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise NetgrowTypeError(f"{where}: eps must be a number (attack strength in the units of x), got {eps!r}")
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise NetgrowValueError(f"{where}: eps must be finite and >= 0, got {eps!r}; ε = 0 is the clean input")
    return eps


def check_clip(clip: Any, where: str) -> Clip:
    if clip is None:
        return None
    if not (isinstance(clip, (tuple, list)) and len(clip) == 2):
        raise NetgrowTypeError(
            f"{where}: clip must be None or a (low, high) pair of numbers or broadcastable tensors, got {clip!r}"
        )
    lo, hi = clip
    for b in (lo, hi):
        if not isinstance(b, (int, float, torch.Tensor)) or isinstance(b, bool):
            raise NetgrowTypeError(f"{where}: clip bounds must be numbers or tensors, got {type(b).__name__}")
    if bool(torch.as_tensor(lo).gt(torch.as_tensor(hi)).any()):
        raise NetgrowValueError(f"{where}: clip low must be <= high everywhere, got low={lo!r} high={hi!r}")
    return lo, hi


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         clip: Clip = (0.0, 1.0)) -> torch.Tensor:
    """The FGSM adversarial batch ``clip(x + eps · sign(∇ₓ CE(model(x), y)))`` (untargeted, L∞).

    ``model`` returns logits; it is evaluated in eval mode (its training flags are restored) and its
    parameters' ``.grad`` are not touched. ``clip`` is a ``(low, high)`` pair of numbers or tensors
    broadcastable to ``x`` (e.g. :func:`normalized_bounds`), or ``None``. Returns a detached tensor on
    ``x``'s device and dtype. ``eps = 0`` returns ``clip(x)``.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.full((3, 1, 2, 2), 0.5); y = torch.tensor([0, 1, 0])
        >>> x_adv = fgsm(model, x, y, eps=0.1)
        >>> bool(((x_adv - x).abs().amax() - 0.1).abs() < 1e-6)
        True
    """
    where = "netgrow.analysis.fgsm"
    eps = _check_eps(eps, where)
    clip = check_clip(clip, where)
    check_xy(x, y, where)
    xm, ym = to_model(model, x, y)
    with eval_mode(model), torch.enable_grad():
        xm = xm.detach().clone().requires_grad_(True)
        logits = model(xm)
        check_labels(ym, logits.shape[1], where)
        loss = F.cross_entropy(logits, ym, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xm)
    # a NaN gradient (e.g. an overflowing loss) must not turn the input into NaN: no step there
    step = torch.nan_to_num(grad.sign(), nan=0.0)
    x_adv = x.detach() + eps * step.to(device=x.device, dtype=x.dtype)
    if clip is not None:
        lo, hi = (torch.as_tensor(b, dtype=x.dtype, device=x.device) for b in clip)
        x_adv = torch.maximum(torch.minimum(x_adv, hi), lo)
    return x_adv.detach()


def fgsm_accuracy(
    model: nn.Module,
    data: Data,
    eps_list: Sequence[float],
    clip: Clip = (0.0, 1.0),
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | str = False,
) -> list[dict[str, float]]:
    """White-box FGSM accuracy of ``model`` for each ε: ``[{"eps", "accuracy"}]``.

    The adversarial examples are made against ``model`` itself and classified by it. ε = 0 gives the
    clean accuracy (of the clipped inputs; inputs inside ``clip`` are unchanged).
    """
    where = "netgrow.analysis.fgsm_accuracy"
    levels = check_levels(eps_list, "eps_list", where)
    clip = check_clip(clip, where)
    rows = []
    for eps in sweep_bar(levels, "fgsm", progress):
        correct = 0
        total = 0
        for x, y in iter_batches(data, batch_size, where):
            x_adv = fgsm(model, x, y, eps, clip)
            with torch.no_grad(), eval_mode(model):
                xa, ya = to_model(model, x_adv, y)
                correct += int((model(xa).argmax(1) == ya).sum())
            total += int(y.numel())
        if total == 0:
            raise NetgrowValueError(f"{where}: data is empty; pass at least one sample")
        rows.append({"eps": eps, "accuracy": correct / total})
    return rows

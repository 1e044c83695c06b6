"""Net2DeeperNet (Chen et al. 2016, section 2.4): insert identity-initialised layers or zero-init residual blocks.

``deepen(model, after, example_input)`` inserts, right after module ``after``, either

- ``kind="layer"``: a Conv (same channels, zero-surround kernel with centre 1, groups 1) or a Linear
  (identity matrix), followed by BatchNorm and the activation when the model uses them at that point; or
- ``kind="residual"``: a basic block conv-BN-act-conv-BN + identity shortcut, then act, whose last BN has
  gamma = 0 (Goyal et al.'s zero-init output branch), so the block is the identity in eval AND train mode.

The insertion point. ``h = phi(W h')`` can become ``phi(U phi(W h'))`` with ``U = I`` only when
``phi(phi(v)) = phi(v)``: ReLU, ReLU6 and Hardtanh (clamps are idempotent), or no activation at all.
If ``after`` is a Conv/Linear (or BatchNorm) whose only consumer is a BatchNorm and/or an activation
module, the point moves past that chain (found by tracing with ``torch.fx``), so ``deepen(m, "conv1")``
inserts after conv1's BN and ReLU. Naming an ``nn.Sequential`` means its last module. The module at the
point is replaced by ``nn.Sequential(old, new_block)`` at the same path; the user's class is kept.

Refused with a netgrow error: an unknown name; a point whose activation is not idempotent (sigmoid, tanh,
GELU, SiLU, LeakyReLU, ...); a functional activation (``F.relu`` in ``forward``) that cannot be wrapped; a
module called more than once in ``forward``; the output layer or anything after it.

BatchNorm of an inserted layer: with ``data`` (an iterable of input batches, or of ``(x, y)`` pairs) the
model is run up to the point to measure each channel's mean and (biased) variance there; the BN gets
running stats (mean, var) and gamma = sqrt(var + eps), beta = mean. That is the identity in eval mode,
and in train mode (batch statistics) close to it for batches like ``data``. Without ``data`` the stats
are (0, 1): still exact in eval mode.

    >>> import torch, netgrow
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> deeper = netgrow.deepen(m, "0", example_input=torch.randn(2, 4))
    >>> [type(l).__name__ for l in deeper[1]]
    ['ReLU', 'Sequential']
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from netgrow.errors import DataError, NetgrowValueError
from netgrow.graph.example_input import check_example_input
from netgrow.graph.insertion import insertion_context, refuse
from netgrow.graph.trace import eval_mode
from netgrow.ops.blocks import BasicBlock, batchnorm, conv
from netgrow.ops.modules import clone, get_module, set_module
from netgrow.ops.param_map import ParamSource, identity_map, set_param_map
from netgrow.ops.replay import example_input as record_input
from netgrow.ops.verify import verify_preserved
from netgrow.spec import append_record

log = logging.getLogger(__name__)

_BN = nn.modules.batchnorm._BatchNorm


# --------------------------------------------------------------------------------------- block builders
@dataclass
class ChannelStats:
    """Per-channel statistics of the value at an insertion point (float64)."""

    mean: torch.Tensor
    var: torch.Tensor  # biased, the normalisation BatchNorm applies to a training batch
    count: int


def identity_block(
    channels: int,
    dim: int,
    *,
    act: nn.Module | None = None,
    bn: bool = False,
    stats: ChannelStats | None = None,
    kernel_size: int | tuple[int, ...] = 3,
    bias: bool = False,
    eps: float = 1e-5,
    momentum: float | None = 0.1,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """``Sequential(layer[, BatchNorm][, act])`` computing the identity on values that ``act`` fixes.

    ``dim`` 0/1/2 = Linear/Conv1d/Conv2d; the layer is the identity matrix or a zero-surround kernel with
    centre 1 (odd ``kernel_size``). The BatchNorm undoes its own normalisation: running stats (mean, var)
    from ``stats`` (default (0, 1)), gamma = sqrt(var + eps), beta = mean. ``act`` is copied.

        >>> b = identity_block(4, 2, act=nn.ReLU(), bn=True).eval()
        >>> x = torch.rand(2, 4, 5, 5)
        >>> bool((b(x) - x).abs().max() < 1e-6)
        True
    """
    ks = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * max(dim, 1)
    if dim > 0 and any(k % 2 == 0 for k in ks):
        raise NetgrowValueError(f"an identity conv needs an odd kernel size, got {kernel_size}")
    # move before filling, so float64 models get float64-exact BatchNorm parameters
    layer = conv(dim, channels, channels, ks, 1, bias=bias).to(device=device, dtype=dtype)
    with torch.no_grad():
        layer.weight.zero_()
        if dim == 0:
            layer.weight.copy_(torch.eye(channels))
        else:
            centre = (slice(None), slice(None)) + tuple(k // 2 for k in ks)
            layer.weight[centre] = torch.eye(channels)
        if layer.bias is not None:
            layer.bias.zero_()
    modules: list[nn.Module] = [layer]
    if bn:
        norm = batchnorm(dim, channels, eps=eps, momentum=momentum).to(device=device, dtype=dtype)
        mean = stats.mean if stats is not None else torch.zeros(channels, dtype=torch.float64)
        var = stats.var if stats is not None else torch.ones(channels, dtype=torch.float64)
        mean, var = mean.to(norm.running_mean), var.to(norm.running_var)
        with torch.no_grad():
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
            norm.weight.copy_(torch.sqrt(var + eps))
            norm.bias.copy_(mean)
        modules.append(norm)
    if act is not None:
        modules.append(copy.deepcopy(act))
    return nn.Sequential(*modules)


def zero_init_residual_block(
    channels: int,
    dim: int = 2,
    *,
    act: nn.Module | None = None,
    bn: bool = True,
    final_act: bool = True,
    kernel_size: int | tuple[int, ...] = 3,
    eps: float = 1e-5,
    momentum: float | None = 0.1,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> BasicBlock:
    """A ``BasicBlock(channels, channels)`` whose residual branch outputs exactly 0 (last BN gamma = 0,
    or the last conv zeroed without BN): ``act(x + 0) = x`` wherever ``act`` fixes x (train and eval mode).

        >>> blk = zero_init_residual_block(4)
        >>> x = torch.rand(2, 4, 5, 5)
        >>> torch.equal(blk(x), x)
        True
    """
    block = BasicBlock(channels, channels, 1, dim, act=act, bn=bn, final_act=final_act, kernel_size=kernel_size)
    with torch.no_grad():
        if bn:
            for norm in (block.bn1, block.bn2):
                norm.eps, norm.momentum = eps, momentum
            block.bn2.weight.zero_()  # zero-init output branch; beta is already 0
        else:
            block.conv2.weight.zero_()
            block.conv2.bias.zero_()
    return block.to(device=device, dtype=dtype)


class _Stop(Exception):
    """Raised by a stats hook once every point has been seen: the rest of the forward is not needed."""


@contextlib.contextmanager
def _batch_statistics(model: nn.Module) -> Iterator[None]:
    """Eval mode except that BatchNorms normalise with batch statistics, as in training, without
    updating their running statistics (dropout stays off, so no RNG is consumed)."""
    norms = [m for m in model.modules() if isinstance(m, _BN)]
    tracked = [m.track_running_stats for m in norms]
    with eval_mode(model):
        try:
            for m in norms:
                m.train()
                m.track_running_stats = False  # batch stats are used, running stats neither read nor written
            yield
        finally:
            for m, flag in zip(norms, tracked):
                m.track_running_stats = flag


def collect_channel_stats(model: nn.Module, paths: list[str], data: Iterable[Any]) -> dict[str, ChannelStats]:
    """Mean and biased variance per channel (dim 1) of the outputs of modules ``paths`` over ``data``.

    ``data`` yields input batches (>= 2 samples) or ``(x, ...)`` tuples; a single tensor is one batch.
    The model's BatchNorms normalise with batch statistics as in training (their buffers are untouched),
    so the statistics describe the values the inserted BatchNorm will see in training. The forward stops
    once every point was reached.
    """
    if isinstance(data, torch.Tensor):
        data = [data]
    ref = next(model.parameters(), None)
    acc: dict[str, list[Any]] = {p: [0, 0.0, 0.0] for p in paths}  # count, mean, M2 (Chan et al. merge)
    seen: set[str] = set()

    def make_hook(path: str):
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            t = (out[0] if isinstance(out, (tuple, list)) else out).detach().to(torch.float64)
            t = t.transpose(0, 1).reshape(t.shape[1], -1)
            n, mean = t.shape[1], t.mean(1)
            m2 = ((t - mean[:, None]) ** 2).sum(1)
            count, old_mean, old_m2 = acc[path]
            total = count + n
            delta = mean - old_mean
            acc[path] = [total, old_mean + delta * n / total, old_m2 + m2 + delta**2 * count * n / total]
            seen.add(path)
            if len(seen) == len(paths):
                raise _Stop

        return hook

    handles = [get_module(model, p).register_forward_hook(make_hook(p)) for p in paths]
    batches = 0
    try:
        with _batch_statistics(model), torch.no_grad():
            for batch in data:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if ref is not None:
                    x = x.to(ref.device, ref.dtype) if x.is_floating_point() else x.to(ref.device)
                seen.clear()
                try:
                    model(x)
                except _Stop:
                    pass
                except ValueError as exc:  # BatchNorm in batch-statistics mode on a 1-sample batch
                    raise DataError(f"deepen: a `data` batch of shape {tuple(x.shape)} cannot be normalised: {exc}; "
                                    "pass batches of at least 2 samples") from exc
                batches += 1
    finally:
        for h in handles:
            h.remove()
    if batches == 0 or any(acc[p][0] == 0 for p in paths):
        raise DataError(
            "deepen: `data` yielded no batches that reach the insertion point; pass an iterable of input batches"
        )
    return {p: ChannelStats(mean=acc[p][1], var=acc[p][2] / acc[p][0], count=acc[p][0]) for p in paths}


# ------------------------------------------------------------------------------------- insertion point
@dataclass
class InsertionPoint:
    """Where and what to insert: the module at ``path`` is wrapped as ``Sequential(old, block)``."""

    path: str
    dim: int  # 0 Linear, 1 Conv1d, 2 Conv2d
    channels: int
    act: nn.Module | None  # the activation the point's value went through (the block repeats it)
    norm: nn.Module | None  # the BatchNorm before it, if the model uses one there
    layer: nn.Module | None  # the Conv/Linear that produced the value (kernel size, bias), if found
    dtype: torch.dtype
    device: torch.device
    # set when the point's value goes through a functional idempotent activation in forward: the wrapper
    # applies it before the block (Sequential(old, pre_act, block)) and forward applies it once more
    pre_act: nn.Module | None = None


def find_insertion_point(model: nn.Module, after: str, example_input: torch.Tensor) -> InsertionPoint:
    """Resolve ``after`` to the module whose output is the insertion point (see the module docstring)."""
    if not after:
        raise NetgrowValueError("deepen: `after` must name a submodule (from model.named_modules()), got ''")
    mod = get_module(model, after)
    while isinstance(mod, nn.Sequential) and len(mod):  # a Sequential's output is its last module's
        after, mod = f"{after}.{len(mod) - 1}", mod[-1]
    ctx = insertion_context(model, after)
    captured: list[torch.Tensor] = []
    handle = get_module(model, ctx.path).register_forward_hook(
        lambda _m, _i, out: captured.append(out[0] if isinstance(out, (tuple, list)) else out)
    )
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input)
    finally:
        handle.remove()
    out = captured[0]
    if ctx.pre_act is not None:
        out = ctx.pre_act(out)
    layer, norm = ctx.layer, ctx.norm
    if isinstance(layer, nn.Linear) or out.dim() == 2:
        dim = 0
    elif out.dim() in (3, 4):
        dim = out.dim() - 2
    else:
        why = f"its output has shape {tuple(out.shape)}; only (N, F), (N, C, L) and (N, C, H, W) are supported"
        raise refuse(model, after, why)
    if ctx.flattened or (dim == 0 and out.dim() != 2):
        norm = None  # a BatchNorm over flattened features would not be the model's own kind
    if layer is not None and layer.weight.dim() != (2 if dim == 0 else dim + 2):
        layer = None  # e.g. a conv before a flatten: its kernel says nothing about the inserted Linear
    channels = out.shape[-1] if dim == 0 else out.shape[1]
    return InsertionPoint(ctx.path, dim, int(channels), ctx.act, norm, layer, out.dtype, out.device, ctx.pre_act)


# ---------------------------------------------------------------------------------------------- the op
def _kernel_size(point: InsertionPoint) -> tuple[int, ...] | int:
    ks = getattr(point.layer, "kernel_size", None)
    if ks is not None and all(k % 2 == 1 for k in ks):
        return tuple(ks)
    return 3


def build_block(point: InsertionPoint, kind: str, stats: ChannelStats | None = None) -> nn.Module:
    """The block ``deepen`` inserts at ``point`` (an identity layer or a zero-init residual block)."""
    norm = point.norm
    eps = getattr(norm, "eps", 1e-5)
    momentum = getattr(norm, "momentum", 0.1)
    common = dict(kernel_size=_kernel_size(point), eps=eps, momentum=momentum, device=point.device, dtype=point.dtype)
    if kind == "residual":
        return zero_init_residual_block(
            point.channels, point.dim, act=point.act, bn=norm is not None, final_act=point.act is not None, **common
        )
    bias = point.layer.bias is not None if point.layer is not None else norm is None
    return identity_block(
        point.channels, point.dim, act=point.act, bn=norm is not None, stats=stats, bias=bias, **common
    )


def deepen(
    model: nn.Module,
    after: str,
    example_input: torch.Tensor,
    data: Iterable[Any] | None = None,
    kind: Literal["layer", "residual", "copy"] = "layer",
    verify: bool = True,
    zero_output: bool = True,
) -> nn.Module:
    """A copy of ``model`` with an identity block inserted after module ``after`` (see the module docstring).

    ``data`` (layer kind with BatchNorm only): input batches to measure the point's channel statistics.
    ``verify``: check the function is unchanged on ``example_input`` (eval mode).
    ``kind="copy"``: ``after`` names a residual block; a copy of it with its residual-branch outputs zeroed
    goes right after it (``netgrow.ops.deepen_copy``); ``zero_output=False`` stacks a plain copy.
    """
    check_example_input(model, example_input, "deepen")
    if kind == "copy":
        from netgrow.ops.deepen_copy import copy_block  # same layer; kept apart, it is its own surgery

        return copy_block(model, after, example_input, zero_output=zero_output, verify=verify)
    if kind not in ("layer", "residual"):
        raise NetgrowValueError(f"deepen: kind={kind!r} is not supported; use 'layer', 'residual' or 'copy'")
    new = clone(model)
    point = find_insertion_point(new, after, example_input)
    if kind == "residual" and point.dim == 0:
        raise refuse(model, after, "kind='residual' needs a Conv1d/Conv2d feature map there", "use kind='layer'")
    old = get_module(new, point.path)
    head = [old] if point.pre_act is None else [old, point.pre_act]
    if point.pre_act is not None:  # so the statistics below see the block's input, after the activation
        set_module(new, point.path, nn.Sequential(*head))
    stats = None
    if data is not None and kind == "layer" and point.norm is not None:
        stats = collect_channel_stats(new, [point.path], data)[point.path]
    block = build_block(point, kind, stats)
    block.train(old.training)
    wrapper = nn.Sequential(*head, block)
    wrapper.training = old.training
    set_module(new, point.path, wrapper)

    append_record(
        new,
        {
            "op": "deepen",
            "after": after,
            "kind": kind,
            "point": point.path,
            "input_shape": list(example_input.shape),
            "input_dtype": str(example_input.dtype).removeprefix("torch."),
        },
    )
    prefix_old, prefix_new = f"{point.path}.", f"{point.path}.0."
    pm = identity_map(new, {})
    for name in list(pm):
        if name.startswith(prefix_new):
            pm[name] = ParamSource(prefix_old + name[len(prefix_new) :])
        elif name.startswith(f"{point.path}."):  # the inserted block (after an optional activation)
            pm[name] = ParamSource(None)
    set_param_map(new, pm)
    if verify:
        verify_preserved(model, new, example_input, f"deepen after {after!r}")
    log.info("deepen: %s block after %s (point %s, %d channels)", kind, after, point.path, point.channels)
    return new


def replay(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture change of a ``deepen`` record (weights are loaded afterwards)."""
    device = next(model.parameters()).device
    x = record_input(record).to(device)
    return deepen(
        model, record["after"], x, kind=record.get("kind", "layer"), verify=False,
        zero_output=record.get("zero_output", True),
    )  # fmt: skip

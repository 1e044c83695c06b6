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
import torch.fx
from torch import nn

from netgrow.errors import DataError, NetgrowValueError
from netgrow.graph.example_input import check_example_input
from netgrow.models.blocks import BasicBlock, batchnorm, conv
from netgrow.ops.expand import output_tail, trace
from netgrow.ops.modules import clone, get_module, set_module
from netgrow.ops.param_map import ParamSource, identity_map, set_param_map
from netgrow.ops.replay import example_input as record_input
from netgrow.ops.verify import eval_mode, verify_preserved
from netgrow.spec import append_record

log = logging.getLogger(__name__)

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_BN = nn.modules.batchnorm._BatchNorm
_IDEMPOTENT = (nn.ReLU, nn.Hardtanh)  # nn.ReLU6 is a Hardtanh
# modules and functions that pass a value range through unchanged (max/avg of values in [a, b] stay in it)
_PASS_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.Flatten,
)  # fmt: skip
_PASS_FUNCTIONS = {
    "flatten", "view", "reshape", "contiguous", "dropout", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
}  # fmt: skip
_FLATTENING = {"flatten", "view", "reshape"}
_FUNCTIONAL_IDEMPOTENT = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_"}
_FUNCTIONAL_OTHER = {
    "sigmoid", "sigmoid_", "tanh", "tanh_", "gelu", "silu", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu",
    "celu", "softplus", "mish", "hardswish", "hardsigmoid", "softsign", "logsigmoid", "softmax", "log_softmax",
    "tanhshrink", "prelu", "rrelu", "glu",
}  # fmt: skip
_FIX = "deepen after a layer followed by ReLU/ReLU6/Hardtanh modules, or after a layer with no activation"


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


def _refuse(model: nn.Module, after: str, why: str, fix: str = _FIX) -> NetgrowValueError:
    where = f"after {after!r} in {type(model).__name__}"
    return NetgrowValueError(f"deepen: cannot insert an identity layer {where}: {why}; {fix}")


def _op_name(node: torch.fx.Node) -> str:
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def _is_activation(mod: nn.Module) -> bool:
    return isinstance(mod, _IDEMPOTENT) or type(mod).__module__ == "torch.nn.modules.activation"


def _functional_act(node: torch.fx.Node) -> nn.Module:
    """The module equivalent of an idempotent functional activation node."""
    name = _op_name(node).rstrip("_")
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    lo = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
    hi = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
    return nn.Hardtanh(float(lo), float(hi))


def _first_node(node: torch.fx.Node) -> torch.fx.Node | None:
    arg = node.args[0] if node.args else None
    return arg if isinstance(arg, torch.fx.Node) else None


def _find_norm(node: torch.fx.Node | None, modules: dict[str, nn.Module], depth: int = 6) -> nn.Module | None:
    """A BatchNorm feeding ``node`` through activations, pass-through ops or adds (a residual sum)."""
    if node is None or depth == 0 or node.op not in ("call_module", "call_function", "call_method"):
        return None
    if node.op == "call_module":
        mod = modules[str(node.target)]
        if isinstance(mod, _BN):
            return mod
        if isinstance(mod, _PASS_MODULES) or _is_activation(mod):
            return _find_norm(_first_node(node), modules, depth - 1)
        return None
    for arg in node.all_input_nodes:
        found = _find_norm(arg, modules, depth - 1)
        if found is not None:
            return found
    return None


def _describe(
    model: nn.Module, after: str, node: torch.fx.Node, modules: dict[str, nn.Module]
) -> tuple[nn.Module | None, nn.Module | None, nn.Module | None, bool]:
    """(activation, batchnorm, layer, flattened) of the value ``node`` computes, walking backwards."""
    flattened = False
    while True:  # skip ops that keep the value range
        if node.op == "call_module":
            mod = modules[str(node.target)]
            if not isinstance(mod, _PASS_MODULES):
                break
            flattened |= isinstance(mod, nn.Flatten)
        elif node.op in ("call_function", "call_method") and _op_name(node) in _PASS_FUNCTIONS:
            flattened |= _op_name(node) in _FLATTENING
        else:
            break
        prev = _first_node(node)
        if prev is None:
            return None, None, None, flattened
        node = prev
    if node.op == "call_module" and list(modules[str(node.target)].children()):
        # `after` is a container traced as one call: describe its own output
        inner = trace(modules[str(node.target)])
        out = next(n for n in inner.graph.nodes if n.op == "output").args[0]
        if not isinstance(out, torch.fx.Node):
            raise _refuse(model, after, "the module does not return a single tensor")
        act, norm, layer, inner_flat = _describe(model, after, out, dict(inner.named_modules()))
        return act, norm, layer, flattened or inner_flat
    act: nn.Module | None = None
    if node.op == "call_module" and _is_activation(mod := modules[str(node.target)]):
        if not isinstance(mod, _IDEMPOTENT):
            why = (
                f"its value comes from {type(mod).__name__} ({node.target!r}), which is not idempotent "
                "(phi(phi(v)) != phi(v)), so no identity layer of that kind exists there"
            )
            raise _refuse(model, after, why)
        act = copy.deepcopy(mod)
    elif node.op in ("call_function", "call_method"):
        name = _op_name(node)
        if name in _FUNCTIONAL_OTHER:
            raise _refuse(model, after, f"its value comes from the functional {name}, which is not idempotent")
        if name in _FUNCTIONAL_IDEMPOTENT:
            act = _functional_act(node)
    if act is not None:
        node = _first_node(node) or node
    norm = _find_norm(node, modules)
    layer = None
    producer = node
    while producer is not None and producer.op == "call_module":
        mod = modules[str(producer.target)]
        if isinstance(mod, _LAYERS):
            layer = mod
            break
        if not isinstance(mod, _BN):
            break
        producer = _first_node(producer)
    return act, norm, layer, flattened


def find_insertion_point(model: nn.Module, after: str, example_input: torch.Tensor) -> InsertionPoint:
    """Resolve ``after`` to the module whose output is the insertion point (see the module docstring)."""
    if not after:
        raise NetgrowValueError("deepen: `after` must name a submodule (from model.named_modules()), got ''")
    mod = get_module(model, after)
    while isinstance(mod, nn.Sequential) and len(mod):  # a Sequential's output is its last module's
        after, mod = f"{after}.{len(mod) - 1}", mod[-1]
    gm = trace(model, leaves={after} if list(mod.children()) else set())
    modules = dict(gm.named_modules())
    calls: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            calls[str(n.target)] = calls.get(str(n.target), 0) + 1
    shared_fix = "give each call site its own module, or deepen after another module"
    pre_act: nn.Module | None = None
    if calls.get(after, 0) != 1:
        why = "it is never called in forward" if after not in calls else f"it is called {calls[after]} times in forward"
        raise _refuse(model, after, why, shared_fix)
    node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == after)

    layer_node, tail, _ = output_tail(gm)
    if node in tail:
        raise _refuse(
            model, after,
            f"it is the output layer or after it (the output layer is {getattr(layer_node, 'target', None)!r}): "
            "an identity there only adds a linear map on the logits",
            "deepen after a hidden layer, or use expand_classes to grow the output layer",
        )  # fmt: skip

    while True:  # move past the BatchNorm / activation modules that consume `after`
        cur = modules[str(node.target)]
        if _is_activation(cur) or len(node.users) != 1:
            break
        (user,) = node.users
        if user.op == "call_module":
            nxt = modules[str(user.target)]
            norm_next = isinstance(nxt, _BN) and isinstance(cur, _LAYERS)
            act_next = _is_activation(nxt) and isinstance(cur, (*_LAYERS, _BN))
            if not (norm_next or act_next):
                break
            if calls[str(user.target)] != 1:
                why = f"it feeds {user.target!r}, which is called {calls[str(user.target)]} times in forward"
                raise _refuse(model, after, why, shared_fix)
            node = user
        elif (
            isinstance(cur, (*_LAYERS, _BN))
            and user.op in ("call_function", "call_method")
            and _op_name(user) in _FUNCTIONAL_IDEMPOTENT
        ):
            # A functional activation in forward cannot be wrapped, but since it is idempotent the module
            # can apply it itself: path -> Sequential(old, act, block), and forward's act(act(v)) == act(v).
            pre_act = _functional_act(user)
            break
        elif (
            isinstance(cur, (*_LAYERS, _BN))
            and user.op in ("call_function", "call_method")
            and _op_name(user) in _FUNCTIONAL_OTHER
        ):
            raise _refuse(
                model, after,
                f"its output goes through the functional {_op_name(user)} in forward, which is not idempotent "
                "(phi(phi(v)) != phi(v)), so no identity layer of that kind exists there",
            )  # fmt: skip
        else:
            break
    path = str(node.target)
    act, norm, layer, flattened = _describe(model, after, node, modules)
    if pre_act is not None:
        act = pre_act

    captured: list[torch.Tensor] = []
    handle = get_module(model, path).register_forward_hook(
        lambda _m, _i, out: captured.append(out[0] if isinstance(out, (tuple, list)) else out)
    )
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input)
    finally:
        handle.remove()
    out = captured[0]
    if pre_act is not None:
        out = pre_act(out)
    if isinstance(layer, nn.Linear) or out.dim() == 2:
        dim = 0
    elif out.dim() in (3, 4):
        dim = out.dim() - 2
    else:
        why = f"its output has shape {tuple(out.shape)}; only (N, F), (N, C, L) and (N, C, H, W) are supported"
        raise _refuse(model, after, why)
    if flattened or (dim == 0 and out.dim() != 2):
        norm = None  # a BatchNorm over flattened features would not be the model's own kind
    if layer is not None and layer.weight.dim() != (2 if dim == 0 else dim + 2):
        layer = None  # e.g. a conv before a flatten: its kernel says nothing about the inserted Linear
    channels = out.shape[-1] if dim == 0 else out.shape[1]
    return InsertionPoint(path, dim, int(channels), act, norm, layer, out.dtype, out.device, pre_act)


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
    kind: Literal["layer", "residual"] = "layer",
    verify: bool = True,
) -> nn.Module:
    """A copy of ``model`` with an identity block inserted after module ``after`` (see the module docstring).

    ``data`` (layer kind with BatchNorm only): input batches to measure the point's channel statistics.
    ``verify``: check the function is unchanged on ``example_input`` (eval mode).
    """
    check_example_input(model, example_input, "deepen")
    if kind not in ("layer", "residual"):
        raise NetgrowValueError(f"deepen: kind={kind!r} is not supported; use 'layer' or 'residual'")
    new = clone(model)
    point = find_insertion_point(new, after, example_input)
    if kind == "residual" and point.dim == 0:
        raise _refuse(model, after, "kind='residual' needs a Conv1d/Conv2d feature map there", "use kind='layer'")
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
    return deepen(model, record["after"], x, kind=record.get("kind", "layer"), verify=False)

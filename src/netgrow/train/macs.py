"""Exact multiply-accumulate (MAC) count of one forward pass, per sample.

``count_macs`` runs the model once on the example batch in eval mode under ``no_grad`` (training flags
restored, no parameter or running statistic changes), counts every op, and divides by the batch size.
Modules are counted by forward hooks on the layer types below; tensor ops called directly in a
``forward`` (the residual ``out + shortcut``, ``F.avg_pool2d``, ``x @ w``) are counted through a
``TorchFunctionMode`` and reported under ``"<functional>"``.

Conventions (MACs per sample):

===========================  ===================================================================
Conv1d/2d/3d                 output elements x (in_channels / groups) x kernel elements
                             (= weight entries x output positions; padding taps included)
ConvTranspose                input positions x weight entries
Linear                       out_features x in_features x (leading dims except batch)
bias (conv, linear)          0 -- the same convention as ``ptflops`` with the bias removed
BatchNorm                    1 per element (inference: normalise + affine fold to one MAC)
LayerNorm/GroupNorm/         3 per element (mean and variance are computed at inference, then the
InstanceNorm                 fused normalise + affine); RMSNorm: 2 per element
Max/Avg pooling              kernel elements per output element (a max's comparison counts as one)
Adaptive pooling             the exact window sizes summed over output positions
add/sub/mul/div (tensor op)  1 per output element (floating outputs only)
sum/mean (tensor op)         1 per input element
matmul/mm/bmm                output elements x inner dimension
MultiheadAttention           q/k/v input projections (L·E·E + S·kdim·E + S·vdim·E) + q·kᵀ (L·S·E)
                             + weights·v (L·S·E) + output projection (L·E·E) per sequence; S counts
                             the extra key of ``add_bias_kv``/``add_zero_attn``
scaled_dot_product_attention its two matrix products: q·kᵀ (L x S x E per query head) + softmax·v
                             (L x S x Ev per query head); dense, i.e. a causal mask still counts the
                             full L x S (what the kernel computes); the scale and softmax are free
activations, dropout,        0 (no multiply-accumulate)
identity, flatten, embedding
===========================  ===================================================================

With ``masks`` (param name -> bool tensor, True = entry held at zero, as in zero-mask training after a
Net2Net expansion; cumulative paper, Table 2), a conv/linear weight entry that is masked AND exactly zero
is not counted: its output positions are subtracted, as hardware with zero-skipping logic would.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from netgrow.train.macs import count_macs
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    >>> count_macs(net, torch.zeros(2, 3, 4, 4))  # 8*4*4 * 3*9  +  128*10
    4736
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.modules.pooling import (
    _AdaptiveAvgPoolNd,
    _AdaptiveMaxPoolNd,
    _AvgPoolNd,
    _MaxPoolNd,
)
from torch.overrides import TorchFunctionMode

from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.graph.example_input import check_example_input
from netgrow.ops.verify import eval_mode

logger = logging.getLogger(__name__)

FUNCTIONAL = "<functional>"

Masks = dict[str, torch.Tensor]


# ---------------------------------------------------------------- counting primitives (whole batch)


def _kernel_elements(kernel_size: Any, spatial_dims: int) -> int:
    if isinstance(kernel_size, int):
        return kernel_size**spatial_dims
    return math.prod(int(k) for k in kernel_size)


def _adaptive_window_total(in_sizes: list[int], out_sizes: list[int]) -> int:
    """Sum over output positions of the adaptive window size (windows are separable per dim)."""
    total = 1
    for n_in, n_out in zip(in_sizes, out_sizes):
        # PyTorch's adaptive windows: [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out))
        total *= sum(-((-(i + 1) * n_in) // n_out) - (i * n_in) // n_out for i in range(n_out))
    return total


def _pool_macs(inp: torch.Tensor, out: torch.Tensor, kernel_size: Any) -> int:
    spatial = out.dim() - 2
    return out.numel() * _kernel_elements(kernel_size, spatial)


def _adaptive_pool_macs(inp: torch.Tensor, out: torch.Tensor) -> int:
    spatial = out.dim() - 2
    lead = out.numel() // max(1, math.prod(out.shape[-spatial:]))
    return lead * _adaptive_window_total(list(inp.shape[-spatial:]), list(out.shape[-spatial:]))


def _positions(out_elements: int, channels: int, what: str) -> int:
    if channels <= 0 or out_elements % channels:
        raise NetgrowValueError(
            f"count_macs: {what} has {out_elements} elements, not a multiple of {channels} channels"
        )
    return out_elements // channels


# ---------------------------------------------------------------- module rules

# A rule returns (dense MACs for the whole batch, weight uses) where ``weight uses`` is how many output
# positions each entry of ``module.weight`` is used at (None: the module has no counted weight).
ModuleRule = Callable[[nn.Module, tuple[Any, ...], Any], tuple[int, int | None]]


def _conv_rule(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> tuple[int, int | None]:
    assert isinstance(m, _ConvNd)
    if m.transposed:
        uses = _positions(inputs[0].numel(), m.in_channels, f"the input of {type(m).__name__}")
    else:
        uses = _positions(out.numel(), m.out_channels, f"the output of {type(m).__name__}")
    return m.weight.numel() * uses, uses


def _linear_rule(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> tuple[int, int | None]:
    assert isinstance(m, nn.Linear)
    uses = _positions(out.numel(), m.out_features, "the output of Linear")
    return m.weight.numel() * uses, uses


def _per_element(k: int) -> ModuleRule:
    def rule(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> tuple[int, int | None]:
        return k * inputs[0].numel(), None

    return rule


def _pool_rule(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> tuple[int, int | None]:
    return _pool_macs(inputs[0], out, m.kernel_size), None  # type: ignore[attr-defined]


def _adaptive_pool_rule(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> tuple[int, int | None]:
    return _adaptive_pool_macs(inputs[0], out), None


def _zero_rule(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> tuple[int, int | None]:
    return 0, None


def _mha_rule(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> tuple[int, int | None]:
    assert isinstance(m, nn.MultiheadAttention)
    if len(inputs) < 3:
        raise NetgrowValueError(
            "count_macs: MultiheadAttention was called with query/key/value as keywords, which forward hooks "
            "cannot see; call it positionally, mha(query, key, value)"
        )
    q, k = inputs[0], inputs[1]
    seq_dim = 1 if (m.batch_first and q.dim() == 3) else 0
    tgt, src = q.shape[seq_dim], k.shape[seq_dim]
    batch = q.numel() // (tgt * q.shape[-1])
    e = m.embed_dim
    keys = src + (1 if m.bias_k is not None else 0) + (1 if m.add_zero_attn else 0)
    per_seq = tgt * e * e + src * (m.kdim + m.vdim) * e + 2 * tgt * keys * e + tgt * e * e
    return batch * per_seq, None


_ZERO_COST: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softmax,
    nn.LogSoftmax, _DropoutNd, nn.Identity, nn.Flatten, nn.Unflatten, nn.Embedding,
)  # fmt: skip

# Checked in order with isinstance, so subclasses (a user's ``MyConv(nn.Conv2d)``) get their base's rule.
MODULE_RULES: list[tuple[tuple[type[nn.Module], ...], ModuleRule]] = [
    ((_ConvNd,), _conv_rule),
    ((nn.Linear,), _linear_rule),
    ((_BatchNorm,), _per_element(1)),
    ((nn.LayerNorm, nn.GroupNorm, _InstanceNorm), _per_element(3)),
    ((nn.RMSNorm,), _per_element(2)),
    ((nn.MultiheadAttention,), _mha_rule),
    ((_MaxPoolNd, _AvgPoolNd), _pool_rule),
    ((_AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd), _adaptive_pool_rule),
    (_ZERO_COST, _zero_rule),
]


def module_rule(module: nn.Module) -> ModuleRule | None:
    """The counting rule for ``module``'s type, or None if netgrow has none (then it is not hooked)."""
    for types, rule in MODULE_RULES:
        if isinstance(module, types):
            return rule
    return None


# ---------------------------------------------------------------- functional (tensor op) rules

FunctionalRule = Callable[[tuple[Any, ...], dict[str, Any], Any], tuple[int, torch.Tensor | None, int]]
# returns (dense MACs, weight tensor or None, weight uses) so masks also apply to F.linear / F.conv2d


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _elementwise(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, torch.Tensor | None, int]:
    if isinstance(out, torch.Tensor) and (out.is_floating_point() or out.is_complex()):
        return out.numel(), None, 0
    return 0, None, 0


def _reduction(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, torch.Tensor | None, int]:
    x = _arg(args, kwargs, 0, "input")
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.numel(), None, 0
    return 0, None, 0


def _f_linear(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, torch.Tensor | None, int]:
    w = _arg(args, kwargs, 1, "weight")
    uses = _positions(out.numel(), w.shape[0], "the output of F.linear")
    return w.numel() * uses, w, uses


def _f_conv(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, torch.Tensor | None, int]:
    w = _arg(args, kwargs, 1, "weight")
    uses = _positions(out.numel(), w.shape[0], "the output of F.conv")
    return w.numel() * uses, w, uses


def _f_conv_transpose(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, torch.Tensor | None, int]:
    x, w = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight")
    uses = _positions(x.numel(), w.shape[0], "the input of F.conv_transpose")
    return w.numel() * uses, w, uses


def _matmul(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, torch.Tensor | None, int]:
    a = args[1] if len(args) == 3 else args[0]  # addmm/baddbmm(bias, a, b)
    return out.numel() * (a.shape[-1] if a.dim() else 1), None, 0


def _sdpa(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, torch.Tensor | None, int]:
    q, k = _arg(args, kwargs, 0, "query"), _arg(args, kwargs, 1, "key")
    keys = k.shape[-2]
    # q·kᵀ: every query element meets S keys; softmax·v: every output element sums over S values
    return q.numel() * keys + out.numel() * keys, None, 0


def _f_pool(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, torch.Tensor | None, int]:
    y = out[0] if isinstance(out, tuple) else out  # max_pool with return_indices
    return _pool_macs(args[0], y, _arg(args, kwargs, 1, "kernel_size")), None, 0


def _f_adaptive_pool(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, torch.Tensor | None, int]:
    y = out[0] if isinstance(out, tuple) else out
    return _adaptive_pool_macs(args[0], y), None, 0


def _f_norm(k: int) -> FunctionalRule:
    def rule(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, torch.Tensor | None, int]:
        return k * _arg(args, kwargs, 0, "input").numel(), None, 0

    return rule


def _functional_rules() -> dict[Any, FunctionalRule]:
    rules: dict[Any, FunctionalRule] = {}
    for op in ("add", "sub", "mul", "div", "subtract", "multiply", "true_divide", "rsub"):
        for owner in (torch, torch.Tensor):
            for name in (op, f"{op}_", f"__{op}__", f"__r{op}__", f"__i{op}__"):
                fn = getattr(owner, name, None)
                if fn is not None:
                    rules[fn] = _elementwise
    for owner in (torch, torch.Tensor):
        for name in ("sum", "mean"):
            rules[getattr(owner, name)] = _reduction
        for name in ("matmul", "mm", "bmm", "addmm", "baddbmm"):
            rules[getattr(owner, name)] = _matmul
    rules[F.linear] = _f_linear
    rules[F.scaled_dot_product_attention] = _sdpa
    for fn in (F.conv1d, F.conv2d, F.conv3d):
        rules[fn] = _f_conv
    for fn in (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d):
        rules[fn] = _f_conv_transpose
    for fn in (
        F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.max_pool1d, F.max_pool2d, F.max_pool3d,
        F.max_pool1d_with_indices, F.max_pool2d_with_indices, F.max_pool3d_with_indices,
    ):  # fmt: skip
        rules[fn] = _f_pool
    for fn in (
        F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
        F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
        F.adaptive_max_pool1d_with_indices, F.adaptive_max_pool2d_with_indices,
        F.adaptive_max_pool3d_with_indices,
    ):  # fmt: skip
        rules[fn] = _f_adaptive_pool
    rules[F.batch_norm] = _f_norm(1)
    for fn in (F.layer_norm, F.group_norm, F.instance_norm):
        rules[fn] = _f_norm(3)
    return rules


FUNCTIONAL_RULES = _functional_rules()


# ---------------------------------------------------------------- the counter


class _Counter(TorchFunctionMode):
    """Counts tensor ops called outside any hooked module; hooked modules count themselves."""

    def __init__(self, zero_masked: dict[int, int]):
        super().__init__()
        self.zero_masked = zero_masked  # id(weight) -> number of entries masked and exactly zero
        self.inside = 0  # depth of hooked modules currently running: their inner ops are theirs
        self.totals: dict[str, int] = {}

    def add(self, bucket: str, macs: int) -> None:
        self.totals[bucket] = self.totals.get(bucket, 0) + macs

    def masked(self, weight: torch.Tensor | None, dense: int, uses: int) -> int:
        if weight is None:
            return dense
        return dense - self.zero_masked.get(id(weight), 0) * uses

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.inside == 0:
            rule = FUNCTIONAL_RULES.get(func)
            if rule is not None:
                dense, weight, uses = rule(args, kwargs, out)
                self.add(FUNCTIONAL, self.masked(weight, dense, uses))
        return out

    def pre_hook(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        self.inside += 1

    def make_hook(self, name: str, rule: ModuleRule) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
            try:  # tensor ops in here run while ``inside > 0``, so the mode does not count them
                if isinstance(out, tuple):
                    out = out[0]
                dense, uses = rule(module, inputs, out)
                weight = getattr(module, "weight", None) if uses is not None else None
                self.add(name, self.masked(weight, dense, uses or 0))
            finally:
                self.inside -= 1

        return hook


def _zero_masked_counts(model: nn.Module, masks: Masks) -> dict[int, int]:
    params = dict(model.named_parameters())
    counts: dict[int, int] = {}
    for name, mask in masks.items():
        if name not in params:
            close = [n for n in params if n.split(".")[-1] == name.split(".")[-1]][:6]
            raise NetgrowValueError(
                f"count_macs: masks has key {name!r}, which is not a parameter of {type(model).__name__}; "
                f"use names from model.named_parameters(), e.g. {close}"
            )
        p = params[name]
        if tuple(mask.shape) != tuple(p.shape):
            raise NetgrowValueError(
                f"count_macs: the mask for {name!r} has shape {tuple(mask.shape)} but the parameter has "
                f"shape {tuple(p.shape)}; pass a bool tensor of the parameter's shape"
            )
        held = mask.to(device=p.device, dtype=torch.bool) & (p.detach() == 0)
        counts[id(p)] = int(held.sum())
    return counts


def _as_args(example_input: Any, model: nn.Module) -> tuple[Any, ...]:
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    if not args or not isinstance(args[0], torch.Tensor):
        raise NetgrowTypeError(
            f"count_macs: example_input must be a torch.Tensor batch (or a tuple of the forward's positional "
            f"arguments, the first a tensor), got {type(example_input).__name__}"
        )
    if args[0].dim() == 0:
        raise NetgrowValueError("count_macs: example_input needs a batch dimension, got a 0-d tensor")
    ref = next(iter(model.parameters()), None)
    if ref is None:
        ref = next(iter(model.buffers()), None)
    if ref is not None:  # the model may live on a GPU while the example was built on the CPU
        # (a meta tensor has no values to move: the example-input check refuses it by name)
        args = tuple(a.to(ref.device) if isinstance(a, torch.Tensor) and not a.is_meta else a for a in args)
    return args


def count_macs(
    model: nn.Module,
    example_input: Any,
    by_module: bool = False,
    masks: Masks | None = None,
) -> int | dict[str, int]:
    """Multiply-accumulates of one forward pass of ``model``, per sample (conventions: module docstring).

    ``example_input``: a batch (tensor, or tuple of the forward's positional tensors; batch = dim 0 of the
    first). Every count must be a multiple of the batch size (ops whose cost does not scale with the batch,
    e.g. arithmetic on parameters alone, make this fail with an error naming the module).
    ``by_module=True`` returns ``{module name: MACs}`` for every hooked module that ran, plus
    ``"<functional>"`` for tensor ops outside modules when there are any; the values sum to the total.
    ``masks``: ``{param name: bool tensor}``; masked entries that are exactly zero are not counted.

    The model's training flags, parameters and buffers are left as they were.
    """
    args = _as_args(example_input, model)  # moved to the model's device
    check_example_input(model, args if len(args) > 1 else args[0], "count_macs", allow_tuple=True)
    batch = int(args[0].shape[0])
    if batch < 1:
        raise NetgrowValueError("count_macs: example_input has batch size 0; pass at least one sample")
    counter = _Counter(_zero_masked_counts(model, masks or {}))
    order: list[str] = []
    handles = []
    try:
        for name, module in model.named_modules():
            rule = module_rule(module)
            if rule is None:
                if not any(True for _ in module.children()) and any(True for _ in module.parameters(recurse=False)):
                    logger.warning(
                        "count_macs: no rule for %s (module %r); only the tensor ops it calls are counted, "
                        "under %r", type(module).__name__, name, FUNCTIONAL,
                    )  # fmt: skip
                continue
            order.append(name)
            handles.append(module.register_forward_pre_hook(counter.pre_hook))
            handles.append(module.register_forward_hook(counter.make_hook(name, rule)))
        with eval_mode(model), torch.no_grad(), counter:
            model(*args)
    finally:
        for h in handles:
            h.remove()

    per_module: dict[str, int] = {}
    for name in [*order, FUNCTIONAL]:
        if name not in counter.totals or (name == FUNCTIONAL and counter.totals[name] == 0):
            continue
        total = counter.totals[name]
        if total % batch:
            raise NetgrowValueError(
                f"count_macs: {name!r} did {total} MACs on a batch of {batch}, not a multiple of the batch "
                f"size: part of its work does not scale with the batch. Pass a batch of 1 to count it once."
            )
        per_module[name] = total // batch
    if by_module:
        return per_module
    return sum(per_module.values())

"""The layer-rule registry: everything netgrow knows about a layer type, in one entry per type.

A ``LayerRule`` describes one module class, functional op or tensor method:

- its **role** for channel groups: ``"producer"`` (its output dim is a new group and its input dim sums
  over the incoming one: Conv/Linear), ``"consumer"`` (sums over its input channels, output fixed),
  ``"channelwise"`` (per-channel tensors along the channels: BatchNorm, LayerNorm, depthwise conv),
  ``"passthrough"`` (moves channels without tensors of its own: activations, pooling, views, ``add``),
  or ``"boundary"`` (channels may not cross it: their group is locked with ``reason``);
- **where its channel dims are**: ``in_dim``/``out_dim`` of the activations (negative = from the end;
  an int or a function of the module), and for pass-through ops the ``flow``, i.e. how the channel dim
  moves through the op (``"same"``, ``"spatial"``, ``"flatten"``, ``"reshape"``, ...; see
  ``netgrow.graph.groups``);
- **which tensors follow the mapping**, per side of the map: ``out_tensors`` (indexed by the produced
  channels), ``in_tensors`` (by the consumed ones), ``channel_tensors`` (per-channel tensors of a
  channel-wise layer, dims relative to ``param_dim``), each ``{attribute: dim}``; the attributes that
  hold each side's width (``widths``, or ``set_width`` for anything more involved); how **fresh units**
  start (``fresh``);
- for ``deepen``: ``activation``/``idempotent`` (φ(φ(v)) = φ(v)), ``keeps_range`` (max/avg of values in
  [a, b] stay in it) and ``as_module`` (the module equivalent of a functional activation).

The graph analysis (``netgrow.graph.groups``) reads roles and dims from here, the ops
(``netgrow.ops.rules``) read tensors, widths and fresh-unit inits, ``deepen`` reads the activation flags.
Users teach netgrow a layer of their own with ``register_rule``::

    >>> import torch, netgrow
    >>> from torch import nn
    >>> class Scale(nn.Module):  # y = x * s, one learnt scale per channel (dim 1)
    ...     def __init__(self, n):
    ...         super().__init__()
    ...         self.s = nn.Parameter(torch.randn(n))
    ...     def forward(self, x):
    ...         return x * self.s.view(1, -1)
    >>> netgrow.register_rule(Scale, netgrow.LayerRule(
    ...     "channelwise", in_dim=1, channel_tensors={"s": 0}, fresh=fill(s=1.0)))
    >>> net = nn.Sequential(nn.Linear(3, 4), Scale(4), nn.ReLU(), nn.Linear(4, 2))
    >>> netgrow.widen(net, {"0": 6}, torch.randn(5, 3), seed=0)[1].s.shape
    torch.Size([6])
    >>> unregister_rule(Scale)
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

import torch
import torch.nn.functional as F
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError

Role = Literal["producer", "consumer", "channelwise", "passthrough", "boundary"]
ROLES: tuple[str, ...] = ("producer", "consumer", "channelwise", "passthrough", "boundary")
# How a pass-through op moves the channel dim (each is one method of netgrow.graph.groups._Analyser)
FLOWS: tuple[str, ...] = (
    "same", "cast", "elementwise", "spatial", "along", "flatten", "reshape", "reduce", "cat", "getitem",
    "permute", "unsqueeze", "squeeze", "size", "split", "contraction", "attention", "expand", "lookup",
    "multihead",
)  # fmt: skip
Dim = Union[int, Callable[[nn.Module], int]]
FreshInit = Callable[[nn.Module, str, torch.Size, torch.dtype, Union[torch.Generator, None]], torch.Tensor]
SetWidth = Callable[[nn.Module, str, int, int], None]
Target = Union[type, Callable[..., Any], str]  # module class, function, or tensor method name


@dataclasses.dataclass(frozen=True)
class LayerRule:
    """What netgrow knows about one layer type (see the module docstring for every field's meaning).

    ``keeps_shape``: its output has its input's shape (lets shape propagation skip it).
    ``spatial``: ``flow="spatial"`` acts on the last ``spatial`` dims (-2: all but batch and channel).
    ``normalises``: the dims whose statistics the layer computes (a function of the module and the
    input's ndim); channels among them may only grow uniformly, by whole multiples.
    ``param_dim``: where the channels sit in the per-channel tensors, given (module, ndim, channel dim).
    ``off_dim``: a channel-wise layer meeting the channels in another dim than ``in_dim``: ``"pass"``
    (they pass untouched) or ``"lock"`` (it acts along them, e.g. a depthwise conv's spatial dims).
    ``reason``: why a boundary (or a producer variant such as a grouped conv) locks its channels.
    """

    role: Role
    in_dim: Dim | None = None
    out_dim: Dim | None = None
    out_tensors: Mapping[str, int] = dataclasses.field(default_factory=dict)
    in_tensors: Mapping[str, int] = dataclasses.field(default_factory=dict)
    channel_tensors: Mapping[str, int] = dataclasses.field(default_factory=dict)
    widths: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    set_width: SetWidth | None = None
    fresh: FreshInit | None = None
    flow: str = "same"
    spatial: int | None = None
    normalises: Callable[[nn.Module, int], range] | None = None
    param_dim: Callable[[nn.Module, int, int], int] | None = None
    off_dim: Literal["pass", "lock"] = "pass"
    reason: str | None = None
    activation: bool = False
    idempotent: bool = False
    keeps_range: bool = False
    as_module: Callable[..., nn.Module] | None = None
    keeps_shape: bool = False

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise NetgrowValueError(f"LayerRule: role {self.role!r} is unknown; use one of {ROLES}")
        if self.flow not in FLOWS:
            raise NetgrowValueError(f"LayerRule: flow {self.flow!r} is unknown; use one of {FLOWS}")
        lookup = self.flow == "lookup"  # an embedding: its input holds indices, it has no input channels
        if self.role in ("producer", "consumer") and not lookup and (self.in_dim is None or not self.in_tensors):
            raise NetgrowValueError(
                f"LayerRule: a {self.role} needs in_dim (the input dim it sums over) and in_tensors "
                f"(e.g. {{'weight': 1}})"
            )
        if self.role == "producer" and (self.out_dim is None or not self.out_tensors):
            raise NetgrowValueError("LayerRule: a producer needs out_dim and out_tensors (e.g. {'weight': 0})")
        if self.role == "channelwise" and self.in_dim is None and self.normalises is None:
            raise NetgrowValueError("LayerRule: a channelwise rule needs in_dim (the dim holding the channels)")

    # ------------------------------------------------------------------ what the ops read
    def tensor_dims(self, side: str) -> Mapping[str, int]:
        """``{tensor attribute: dim}`` for one side of a channel map: ``"out"``, ``"in"`` or ``"pass"``."""
        return {"out": self.out_tensors, "in": self.in_tensors, "pass": self.channel_tensors}[side]

    def dims(self, module: nn.Module, side: str, param_dim: int = 0) -> dict[str, int]:
        """The tensors of ``module`` indexed by a map on ``side``; an error if the layer has none there."""
        table = self.tensor_dims(side)
        if not table:
            sides = [s for s in ("out", "in", "pass") if self.tensor_dims(s)]
            raise NetgrowTypeError(
                f"{type(module).__name__} has no {side!r} channel dimension netgrow can resize; "
                f"it can be resized as {sorted(sides)}"
            )
        return {name: d + (param_dim if side == "pass" else 0) for name, d in table.items()}

    def resize_width(self, module: nn.Module, side: str, new: int, param_dim: int = 0) -> None:
        """Write the new width of ``side`` into ``module``'s attributes."""
        if self.set_width is not None:
            self.set_width(module, side, new, param_dim)
            return
        for attr in self.widths.get(side, ()):
            setattr(module, attr, new)

    def fresh_values(
        self, module: nn.Module, name: str, shape: torch.Size, dtype: torch.dtype, gen: torch.Generator | None
    ) -> torch.Tensor:
        """Values for fresh (index -1) entries of tensor ``name`` in its new ``shape``, on the CPU."""
        if self.fresh is None:
            raise NetgrowTypeError(
                f"{type(module).__name__} has no init for fresh units of {name!r}; give its LayerRule a `fresh`"
            )
        return self.fresh(module, name, shape, dtype, gen)

    def has_tensors(self) -> bool:
        return bool(self.out_tensors or self.in_tensors or self.channel_tensors)


RuleOrChooser = Union[LayerRule, Callable[[nn.Module], LayerRule]]
MODULE_RULES: dict[type, RuleOrChooser] = {}  # a chooser picks a variant from the instance (e.g. groups)
FUNCTION_RULES: dict[Any, LayerRule] = {}
METHOD_RULES: dict[str, LayerRule] = {}
# third-party module classes known by class name, so netgrow need not import their package (HF's Conv1D)
NAMED_MODULE_RULES: dict[str, RuleOrChooser] = {}


# ------------------------------------------------------------------------------------------ registration
def register_rule(target: Target, rule: RuleOrChooser, *, replace: bool = False) -> None:
    """Teach netgrow a layer type: ``target`` is a module class, a function or a tensor method name.

    ``rule`` is a ``LayerRule`` (or, for a module class, a function of the instance returning one).
    Registering a target twice needs ``replace=True``. See the module docstring for an example.
    """
    if isinstance(target, str):
        table: dict[Any, Any] = METHOD_RULES
    elif isinstance(target, type):
        if not issubclass(target, nn.Module):
            raise NetgrowTypeError(
                f"register_rule: {target.__name__} is not a torch.nn.Module subclass; pass a module class, "
                f"a function or a tensor method name"
            )
        table = MODULE_RULES
    elif callable(target):
        table = FUNCTION_RULES
    else:
        raise NetgrowTypeError(
            f"register_rule: target {target!r} must be a module class, a function or a tensor method name"
        )
    if not isinstance(rule, LayerRule) and not (table is MODULE_RULES and callable(rule)):
        raise NetgrowTypeError(
            f"register_rule: rule for {_target_name(target)} must be a netgrow.LayerRule, got {type(rule).__name__}"
        )
    if table is not MODULE_RULES and rule.role in ("producer", "consumer", "channelwise"):
        raise NetgrowValueError(
            f"register_rule: {_target_name(target)} is a function/method, which has no tensors of its own; "
            f"role {rule.role!r} needs a module class (functions and methods are 'passthrough' or 'boundary')"
        )
    if target in table and not replace:
        raise NetgrowValueError(
            f"register_rule: {_target_name(target)} already has a rule; pass replace=True to override it"
        )
    table[target] = rule


def unregister_rule(target: Target) -> None:
    """Remove the rule of ``target`` (a no-op if it has none)."""
    for table in (MODULE_RULES, FUNCTION_RULES, METHOD_RULES):
        if isinstance(target, str) == (table is METHOD_RULES):
            table.pop(target, None)  # type: ignore[call-overload]


def all_rules() -> dict[Target, RuleOrChooser]:
    """Every registered target with its rule (module classes, then functions, then method names)."""
    return {**MODULE_RULES, **FUNCTION_RULES, **METHOD_RULES}


def _target_name(target: Any) -> str:
    if isinstance(target, str):
        return f"method .{target}()"
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)


# ------------------------------------------------------------------------------------------ lookup
def module_rule(module: nn.Module) -> LayerRule | None:
    """The rule of ``module``'s class or of its nearest registered base class (``None`` if unknown)."""
    for cls in type(module).__mro__:
        rule = MODULE_RULES.get(cls)
        if rule is not None:
            return rule if isinstance(rule, LayerRule) else rule(module)
    rule = NAMED_MODULE_RULES.get(type(module).__name__)
    if rule is not None:
        return rule if isinstance(rule, LayerRule) else rule(module)
    return None


def is_leaf_class(cls: type) -> bool:
    """A module class with a rule of its own is traced as one call (as torch.nn layers always are)."""
    return cls in MODULE_RULES or cls.__name__ in NAMED_MODULE_RULES


def node_rule(op: str, target: Any, modules: Mapping[str, nn.Module]) -> LayerRule | None:
    """The rule of an fx node given its ``op`` and ``target`` (``None`` for an unknown op)."""
    if op == "call_module":
        return module_rule(modules[str(target)])
    if op == "call_function":
        try:
            return FUNCTION_RULES.get(target)
        except TypeError:  # an unhashable callable
            return None
    if op == "call_method":
        return METHOD_RULES.get(str(target))
    return None


def is_activation(module: nn.Module) -> bool:
    """An activation module: registered as one, or any other layer of ``torch.nn.modules.activation``."""
    rule = module_rule(module)
    if rule is not None and rule.activation:
        return True
    return type(module).__module__ == "torch.nn.modules.activation"


def resolve_dim(dim: Dim, module: nn.Module | None, ndim: int) -> int:
    """A rule's channel dim for an ``ndim``-dim tensor, counted from the front."""
    d = dim(module) if callable(dim) else dim  # type: ignore[arg-type]
    return d + ndim if d < 0 else d


# ------------------------------------------------------------------------------------------ init helpers
def fill(**values: float) -> FreshInit:
    """Fresh units of tensor ``name`` start at the constant ``values[name]`` (e.g. BatchNorm weight 1)."""

    def init(module: nn.Module, name: str, shape: torch.Size, dtype: torch.dtype, gen: Any) -> torch.Tensor:
        return torch.full(shape, values[name], dtype=dtype)

    return init


def default_uniform(module: nn.Module, name: str, shape: torch.Size, dtype: torch.dtype, gen: Any) -> torch.Tensor:
    """PyTorch's Linear/Conv init: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias alike."""
    fan_in = module.weight.shape[1] * math.prod(module.weight.shape[2:])
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return torch.empty(shape, dtype=dtype).uniform_(-bound, bound, generator=gen)


def _depthwise_uniform(module: nn.Module, name: str, shape: torch.Size, dtype: torch.dtype, gen: Any) -> torch.Tensor:
    bound = 1.0 / math.sqrt(math.prod(module.kernel_size))  # one input channel per filter: fan_in = kernel size
    return torch.empty(shape, dtype=dtype).uniform_(-bound, bound, generator=gen)


# ------------------------------------------------------------------------------------------ standard rules
def _conv_channel_dim(m: nn.Module) -> int:
    return -(m.weight.dim() - 1)  # (N, C, *spatial) or unbatched (C, *spatial): C sits before the kernel dims


LINEAR = LayerRule(
    "producer", in_dim=-1, out_dim=-1, out_tensors={"weight": 0, "bias": 0}, in_tensors={"weight": 1},
    widths={"out": ("out_features",), "in": ("in_features",)}, fresh=default_uniform,
)  # fmt: skip
CONV = LayerRule(
    "producer", in_dim=_conv_channel_dim, out_dim=_conv_channel_dim, out_tensors={"weight": 0, "bias": 0},
    in_tensors={"weight": 1}, widths={"out": ("out_channels",), "in": ("in_channels",)}, fresh=default_uniform,
)  # fmt: skip
DEPTHWISE_CONV = LayerRule(
    "channelwise", in_dim=_conv_channel_dim, channel_tensors={"weight": 0, "bias": 0},
    widths={"pass": ("in_channels", "out_channels", "groups")}, fresh=_depthwise_uniform, off_dim="lock",
)  # fmt: skip


def _conv_rule(m: nn.Module) -> LayerRule:
    if m.groups == 1:
        return CONV
    if m.groups == m.in_channels == m.out_channels:  # one filter per channel: a per-channel op
        return DEPTHWISE_CONV
    why = (
        f"grouped conv {{name}} (groups={m.groups}) couples its input and output channels group by group; "
        f"netgrow resizes only ordinary (groups=1) and depthwise convs"
    )
    return dataclasses.replace(CONV, reason=why)


_NORM_FRESH = fill(weight=1.0, bias=0.0, running_mean=0.0, running_var=1.0)
BATCHNORM = LayerRule(
    "channelwise", in_dim=1, channel_tensors={"weight": 0, "bias": 0, "running_mean": 0, "running_var": 0},
    widths={"pass": ("num_features",)}, fresh=_NORM_FRESH, keeps_shape=True,
)  # fmt: skip


def _group_norm_width(module: nn.Module, side: str, new: int, param_dim: int) -> None:
    old = module.num_channels
    if (new * module.num_groups) % old:
        raise NetgrowTypeError(
            f"GroupNorm({module.num_groups}, {old}) cannot follow a width of {new}: "
            f"GroupNorm groups only grow by whole multiples of the width"
        )
    module.num_groups = new * module.num_groups // old
    module.num_channels = new


def _layer_norm_width(module: nn.Module, side: str, new: int, param_dim: int) -> None:
    shape = list(module.normalized_shape)
    shape[param_dim] = new
    module.normalized_shape = tuple(shape)


GROUPNORM = LayerRule(
    "channelwise", in_dim=1, channel_tensors={"weight": 0, "bias": 0}, set_width=_group_norm_width,
    fresh=_NORM_FRESH, normalises=lambda m, nd: range(1, nd), keeps_shape=True,
)  # fmt: skip
LAYERNORM = LayerRule(
    "channelwise", channel_tensors={"weight": 0, "bias": 0}, set_width=_layer_norm_width, fresh=_NORM_FRESH,
    normalises=lambda m, nd: range(nd - len(m.normalized_shape), nd),
    param_dim=lambda m, nd, dim: dim - (nd - len(m.normalized_shape)), keeps_shape=True,
)  # fmt: skip
_PRELU_PER_CHANNEL = LayerRule(
    "channelwise", in_dim=1, channel_tensors={"weight": 0}, widths={"pass": ("num_parameters",)},
    fresh=fill(weight=0.25), activation=True, keeps_shape=True,
)  # fmt: skip
_SAME = LayerRule("passthrough", keeps_shape=True)
_ACTIVATION = LayerRule("passthrough", activation=True, keeps_shape=True)
_IDEMPOTENT_ACTIVATION = LayerRule("passthrough", activation=True, idempotent=True, keeps_shape=True)
_KEEPS_RANGE = LayerRule("passthrough", keeps_range=True, keeps_shape=True)


def _spatial(k: int, keeps_range: bool = False) -> LayerRule:
    return LayerRule("passthrough", flow="spatial", spatial=k, keeps_range=keeps_range)


_ALONG = LayerRule("passthrough", flow="along", activation=True)  # softmax & co: mixes units along `dim`

for _cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    MODULE_RULES[_cls] = _conv_rule
MODULE_RULES[nn.Linear] = LINEAR
for _cls in (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm):
    MODULE_RULES[_cls] = BATCHNORM
MODULE_RULES[nn.GroupNorm] = GROUPNORM
MODULE_RULES[nn.LayerNorm] = LAYERNORM
MODULE_RULES[nn.RMSNorm] = LAYERNORM  # the same tensors and widths, without a bias
MODULE_RULES[nn.PReLU] = lambda m: _PRELU_PER_CHANNEL if m.num_parameters > 1 else _ACTIVATION
for _cls in (nn.ReLU, nn.Hardtanh):  # nn.ReLU6 is a Hardtanh: clamps are idempotent
    MODULE_RULES[_cls] = _IDEMPOTENT_ACTIVATION
for _cls in (
    nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Threshold, nn.Hardshrink,
    nn.Softshrink,
):  # fmt: skip
    MODULE_RULES[_cls] = _ACTIVATION
for _cls in (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d):
    MODULE_RULES[_cls] = _KEEPS_RANGE
for _cls in (nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout):
    MODULE_RULES[_cls] = _SAME
for _cls, _k in {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AdaptiveAvgPool1d: 1,
    nn.AdaptiveAvgPool2d: 2, nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2,
}.items():  # fmt: skip
    MODULE_RULES[_cls] = _spatial(_k, keeps_range=True)
for _cls, _k in {
    nn.MaxPool3d: 3, nn.AvgPool3d: 3, nn.AdaptiveAvgPool3d: 3, nn.AdaptiveMaxPool3d: 3, nn.LPPool1d: 1,
    nn.LPPool2d: 2, nn.Upsample: -2, nn.UpsamplingNearest2d: 2, nn.UpsamplingBilinear2d: 2, nn.ZeroPad1d: 1,
    nn.ZeroPad2d: 2, nn.ZeroPad3d: 3, nn.ConstantPad1d: 1, nn.ConstantPad2d: 2, nn.ConstantPad3d: 3,
    nn.ReflectionPad1d: 1, nn.ReflectionPad2d: 2, nn.ReflectionPad3d: 3, nn.ReplicationPad1d: 1,
    nn.ReplicationPad2d: 2, nn.ReplicationPad3d: 3,
}.items():  # fmt: skip
    MODULE_RULES[_cls] = _spatial(_k)
for _cls in (nn.Softmax, nn.LogSoftmax, nn.Softmin):
    MODULE_RULES[_cls] = _ALONG
MODULE_RULES[nn.Flatten] = LayerRule("passthrough", flow="flatten", keeps_range=True)


def _functional(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    return lambda *args, **kwargs: cls()


def _hardtanh_module(x: Any = None, min_val: float = -1.0, max_val: float = 1.0, *_: Any, **__: Any) -> nn.Module:
    return nn.Hardtanh(float(min_val), float(max_val))


_relu_as_module = _functional(nn.ReLU)
_relu6_as_module = _functional(nn.ReLU6)
for _fn, _rule in {
    F.relu: dataclasses.replace(_IDEMPOTENT_ACTIVATION, as_module=_relu_as_module),
    F.relu_: dataclasses.replace(_IDEMPOTENT_ACTIVATION, as_module=_relu_as_module),
    torch.relu: dataclasses.replace(_IDEMPOTENT_ACTIVATION, as_module=_relu_as_module),
    torch.relu_: dataclasses.replace(_IDEMPOTENT_ACTIVATION, as_module=_relu_as_module),
    F.relu6: dataclasses.replace(_IDEMPOTENT_ACTIVATION, as_module=_relu6_as_module),
    F.hardtanh: dataclasses.replace(_IDEMPOTENT_ACTIVATION, as_module=_hardtanh_module),
    F.hardtanh_: dataclasses.replace(_IDEMPOTENT_ACTIVATION, as_module=_hardtanh_module),
}.items():  # fmt: skip
    FUNCTION_RULES[_fn] = _rule
for _fn in (
    F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.leaky_relu, F.hardswish, F.hardsigmoid, F.softplus,
    F.softsign, F.logsigmoid, F.tanhshrink, F.threshold, torch.sigmoid, torch.tanh,
    torch.selu, torch.celu,
):  # fmt: skip
    FUNCTION_RULES[_fn] = _ACTIVATION
for _fn in (torch.exp, torch.abs, torch.neg, torch.sqrt, torch.square, torch.clamp, torch.clip, F.hardshrink,
            operator.neg, operator.pos, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout):  # fmt: skip
    FUNCTION_RULES[_fn] = _SAME
FUNCTION_RULES[F.dropout] = _KEEPS_RANGE
# activations that netgrow cannot follow channels through (parameters or channel-halving of their own)
for _fn in (F.leaky_relu_, F.elu_, F.prelu, F.rrelu, F.glu, torch.prelu, torch.rrelu):
    FUNCTION_RULES[_fn] = LayerRule("boundary", activation=True)
for _fn in (
    operator.add, operator.sub, operator.mul, operator.truediv, operator.pow, torch.add, torch.sub,
    torch.subtract, torch.mul, torch.multiply,
    torch.div, torch.true_divide, torch.maximum, torch.minimum, torch.where, torch.pow,
):  # fmt: skip
    FUNCTION_RULES[_fn] = LayerRule("passthrough", flow="elementwise")
for _fn, _k in {
    F.max_pool1d: 1, F.max_pool2d: 2, F.avg_pool1d: 1, F.avg_pool2d: 2,
}.items():  # fmt: skip
    FUNCTION_RULES[_fn] = _spatial(_k, keeps_range=True)
for _fn, _k in {
    F.max_pool3d: 3, F.avg_pool3d: 3, F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2,
    F.adaptive_avg_pool3d: 3, F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3,
    F.interpolate: -2,
}.items():  # fmt: skip
    FUNCTION_RULES[_fn] = _spatial(_k)
FUNCTION_RULES[F.pad] = LayerRule("passthrough", flow="spatial")  # the pad tuple says how many dims
for _fn in (F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax):
    FUNCTION_RULES[_fn] = _ALONG
for _fn in (torch.cat, torch.concat, torch.concatenate):
    FUNCTION_RULES[_fn] = LayerRule("passthrough", flow="cat")
FUNCTION_RULES[torch.flatten] = LayerRule("passthrough", flow="flatten", keeps_range=True)
FUNCTION_RULES[torch.reshape] = LayerRule("passthrough", flow="reshape", keeps_range=True)
for _fn in (torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var):
    FUNCTION_RULES[_fn] = LayerRule("passthrough", flow="reduce")
FUNCTION_RULES[operator.getitem] = LayerRule("passthrough", flow="getitem")
for _fn in (torch.permute, torch.transpose, torch.t):
    FUNCTION_RULES[_fn] = LayerRule("passthrough", flow="permute")
FUNCTION_RULES[torch.unsqueeze] = LayerRule("passthrough", flow="unsqueeze")
FUNCTION_RULES[torch.squeeze] = LayerRule("passthrough", flow="squeeze")
FUNCTION_RULES[getattr] = LayerRule("passthrough", flow="size")

for _name in ("relu", "relu_"):
    METHOD_RULES[_name] = dataclasses.replace(_IDEMPOTENT_ACTIVATION, as_module=_relu_as_module)
for _name in ("sigmoid", "sigmoid_", "tanh", "tanh_"):
    METHOD_RULES[_name] = _ACTIVATION
for _name in (
    "exp", "abs", "neg", "sqrt", "square", "clamp", "clamp_", "clip", "clone", "detach", "float", "double",
    "half", "bfloat16", "type", "cpu", "cuda", "requires_grad_",
):  # fmt: skip
    METHOD_RULES[_name] = _SAME
METHOD_RULES["contiguous"] = _KEEPS_RANGE
for _name in ("to", "type_as"):  # a tensor argument only lends its dtype/device
    METHOD_RULES[_name] = LayerRule("passthrough", flow="cast")
for _name in ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum", "pow", "where"):
    METHOD_RULES[_name] = LayerRule("passthrough", flow="elementwise")
for _name in ("mean", "sum", "amax", "amin", "std", "var", "logsumexp", "prod"):
    METHOD_RULES[_name] = LayerRule("passthrough", flow="reduce")
for _name in ("softmax", "log_softmax"):
    METHOD_RULES[_name] = _ALONG
METHOD_RULES["flatten"] = LayerRule("passthrough", flow="flatten", keeps_range=True)
for _name in ("view", "reshape"):
    METHOD_RULES[_name] = LayerRule("passthrough", flow="reshape", keeps_range=True)
for _name in ("permute", "transpose", "swapaxes", "t"):
    METHOD_RULES[_name] = LayerRule("passthrough", flow="permute")
METHOD_RULES["unsqueeze"] = LayerRule("passthrough", flow="unsqueeze")
METHOD_RULES["squeeze"] = LayerRule("passthrough", flow="squeeze")
for _name in ("size", "dim", "numel", "ndimension", "nelement"):
    METHOD_RULES[_name] = LayerRule("passthrough", flow="size")


# ------------------------------------------------------------------------------------------ transformers
# Embeddings, Hugging Face's transposed Conv1D, and the ops attention is written with: split/chunk
# (the mirror of cat), matmul of two activations, scaled_dot_product_attention, expand.
def _normal(std: float) -> FreshInit:
    def init(module: nn.Module, name: str, shape: torch.Size, dtype: torch.dtype, gen: Any) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype).normal_(0.0, std, generator=gen)

    return init


EMBEDDING = LayerRule(
    "producer", out_dim=-1, out_tensors={"weight": 1}, widths={"out": ("embedding_dim",)}, fresh=_normal(1.0),
    flow="lookup",
)  # fmt: skip
MODULE_RULES[nn.Embedding] = EMBEDDING
# Hugging Face's Conv1D (GPT-2): a linear layer whose weight is stored (in, out), width attribute nf
NAMED_MODULE_RULES["Conv1D"] = LayerRule(
    "producer", in_dim=-1, out_dim=-1, out_tensors={"weight": 1, "bias": 0}, in_tensors={"weight": 0},
    widths={"out": ("nf",)}, fresh=_normal(0.02),
)  # fmt: skip
for _fn in (torch.split, torch.chunk):
    FUNCTION_RULES[_fn] = LayerRule("passthrough", flow="split")
for _name in ("split", "chunk"):
    METHOD_RULES[_name] = LayerRule("passthrough", flow="split")
for _fn in (torch.matmul, operator.matmul):
    FUNCTION_RULES[_fn] = LayerRule("passthrough", flow="contraction")
METHOD_RULES["matmul"] = LayerRule("passthrough", flow="contraction")
FUNCTION_RULES[F.scaled_dot_product_attention] = LayerRule("passthrough", flow="attention")
METHOD_RULES["expand"] = LayerRule("passthrough", flow="expand")
FUNCTION_RULES[torch.rsqrt] = _SAME
METHOD_RULES["rsqrt"] = _SAME
for _fn in (torch.masked_fill,):
    FUNCTION_RULES[_fn] = LayerRule("passthrough", flow="elementwise")
METHOD_RULES["masked_fill"] = LayerRule("passthrough", flow="elementwise")
# nn.MultiheadAttention: one composite rule (in_proj, heads, out_proj; see groups._Analyser.flow_multihead)
MODULE_RULES[nn.MultiheadAttention] = LayerRule("passthrough", flow="multihead")

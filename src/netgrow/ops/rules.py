"""The rule table: how each layer type's tensors follow a channel mapping.

Widening and pruning describe a change of a channel dimension as a ``DimMap`` (new position j takes old
position ``index[j]``, scaled by ``weight_scale[j]``; ``-1`` marks a fresh unit). A layer meets such a
map in one of three *roles*:

- ``"out"``  it produces the channels (Conv/Linear output dim: weight rows, bias),
- ``"in"``   it sums over them (Conv/Linear input dim: weight columns),
- ``"pass"`` it carries per-channel tensors (BatchNorm weight/bias/running stats, LayerNorm/GroupNorm
  affine, PReLU slopes, depthwise-conv filters).

Each layer type has one ``Rule`` in ``RULES`` saying which of its tensors are indexed along which dim in
each role, which attributes hold the widths, and how fresh units are initialised (random pad). Adding a
layer type is one entry in ``RULES``. The functional aliases ``resize_out``, ``resize_in`` and
``passthrough`` resize one module in place::

    >>> import torch
    >>> from torch import nn
    >>> fc = nn.Linear(3, 2)
    >>> _ = resize_out(fc, torch.tensor([0, 1, 1]))     # replicate unit 1
    >>> fc.weight.shape, fc.out_features
    (torch.Size([3, 3]), 3)
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Literal

import torch
from torch import nn

from netgrow.errors import NetgrowTypeError
from netgrow.ops.param_map import DimMap, ParamSource, gather

log = logging.getLogger(__name__)

Role = Literal["out", "in", "pass"]
Plan = dict[str, list[DimMap]]  # tensor attribute name -> the maps of its resized dims


class Rule:
    """How one layer type's tensors follow channel maps. Subclasses fill ``tensors`` and ``widths``."""

    # role -> {tensor attribute: dim indexed by the channels}; "pass" dims are relative to param_dim
    tensors: dict[str, dict[str, int]] = {}
    # role -> attribute names holding the width that role changes
    widths: dict[str, tuple[str, ...]] = {}

    def dims(self, module: nn.Module, role: Role, param_dim: int = 0) -> dict[str, int]:
        table = self.tensors.get(role)
        if table is None:
            raise NetgrowTypeError(
                f"{type(module).__name__} has no {role!r} channel dimension netgrow can resize; "
                f"it can be resized as {sorted(self.tensors)}"
            )
        return {name: d + (param_dim if role == "pass" else 0) for name, d in table.items()}

    def set_width(self, module: nn.Module, role: Role, new: int, param_dim: int = 0) -> None:
        for attr in self.widths.get(role, ()):
            setattr(module, attr, new)

    def fresh(
        self, module: nn.Module, name: str, shape: torch.Size, dtype: torch.dtype, gen: torch.Generator | None
    ) -> torch.Tensor:
        """Values for fresh (index -1) entries of tensor ``name`` in its new ``shape``, on the CPU."""
        raise NotImplementedError


class LinearRule(Rule):
    """``nn.Linear``: weight (out, in), bias (out)."""

    tensors = {"out": {"weight": 0, "bias": 0}, "in": {"weight": 1}}
    widths = {"out": ("out_features",), "in": ("in_features",)}

    def fresh(self, module, name, shape, dtype, gen):
        # PyTorch's default init: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same for bias
        fan_in = module.weight.shape[1] * math.prod(module.weight.shape[2:])
        bound = 1.0 / math.sqrt(max(fan_in, 1))
        return torch.empty(shape, dtype=dtype).uniform_(-bound, bound, generator=gen)


class TransposedLinearRule(LinearRule):
    """Hugging Face's ``Conv1D`` (GPT-2): a linear layer with weight stored (in, out) and width ``nf``."""

    tensors = {"out": {"weight": 1, "bias": 0}, "in": {"weight": 0}}
    widths = {"out": ("nf",)}

    def fresh(self, module, name, shape, dtype, gen):
        return torch.empty(shape, dtype=dtype).normal_(0.0, 0.02, generator=gen)  # Conv1D's own init


class EmbeddingRule(Rule):
    """``nn.Embedding``: weight (num_embeddings, embedding_dim); its output dim is the embedding dim."""

    tensors = {"out": {"weight": 1}}
    widths = {"out": ("embedding_dim",)}

    def fresh(self, module, name, shape, dtype, gen):
        return torch.empty(shape, dtype=dtype).normal_(0.0, 1.0, generator=gen)  # PyTorch's default init


class ConvRule(LinearRule):
    """``nn.Conv1d/2d/3d`` (groups=1): weight (out, in, *k); depthwise (groups == channels) in role "pass"."""

    tensors = {"out": {"weight": 0, "bias": 0}, "in": {"weight": 1}, "pass": {"weight": 0, "bias": 0}}
    widths = {"out": ("out_channels",), "in": ("in_channels",), "pass": ("in_channels", "out_channels", "groups")}

    def fresh(self, module, name, shape, dtype, gen):
        if module.groups > 1:  # depthwise: fan_in is the kernel size
            bound = 1.0 / math.sqrt(math.prod(module.kernel_size))
            return torch.empty(shape, dtype=dtype).uniform_(-bound, bound, generator=gen)
        return super().fresh(module, name, shape, dtype, gen)


class BatchNormRule(Rule):
    """``BatchNorm*``/``InstanceNorm*``: per-channel affine and running statistics."""

    tensors = {"pass": {"weight": 0, "bias": 0, "running_mean": 0, "running_var": 0}}
    widths = {"pass": ("num_features",)}
    _fresh_value = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}

    def fresh(self, module, name, shape, dtype, gen):
        return torch.full(shape, self._fresh_value[name], dtype=dtype)


class GroupNormRule(BatchNormRule):
    """``nn.GroupNorm``: per-channel affine; ``num_groups`` grows with the width (whole multiples only)."""

    tensors = {"pass": {"weight": 0, "bias": 0}}

    def set_width(self, module, role, new, param_dim=0):
        old = module.num_channels
        if (new * module.num_groups) % old:
            raise NetgrowTypeError(
                f"GroupNorm({module.num_groups}, {old}) cannot follow a width of {new}: "
                f"GroupNorm groups only grow by whole multiples of the width"
            )
        module.num_groups = new * module.num_groups // old
        module.num_channels = new


class LayerNormRule(BatchNormRule):
    """``nn.LayerNorm``: affine over ``normalized_shape``; the channels sit at ``param_dim`` of it."""

    tensors = {"pass": {"weight": 0, "bias": 0}}

    def set_width(self, module, role, new, param_dim=0):
        shape = list(module.normalized_shape)
        shape[param_dim] = new
        module.normalized_shape = tuple(shape)


class PReLURule(Rule):
    """``nn.PReLU`` with one slope per channel."""

    tensors = {"pass": {"weight": 0}}
    widths = {"pass": ("num_parameters",)}

    def fresh(self, module, name, shape, dtype, gen):
        return torch.full(shape, 0.25, dtype=dtype)  # PyTorch's default init


RULES: dict[type[nn.Module], Rule] = {
    nn.Linear: LinearRule(),
    nn.Conv1d: ConvRule(),
    nn.Conv2d: ConvRule(),
    nn.Conv3d: ConvRule(),
    nn.BatchNorm1d: BatchNormRule(),
    nn.BatchNorm2d: BatchNormRule(),
    nn.BatchNorm3d: BatchNormRule(),
    nn.SyncBatchNorm: BatchNormRule(),
    nn.InstanceNorm1d: BatchNormRule(),
    nn.InstanceNorm2d: BatchNormRule(),
    nn.InstanceNorm3d: BatchNormRule(),
    nn.GroupNorm: GroupNormRule(),
    nn.LayerNorm: LayerNormRule(),
    nn.RMSNorm: LayerNormRule(),
    nn.PReLU: PReLURule(),
    nn.Embedding: EmbeddingRule(),
}
# third-party layer types netgrow knows without importing their package, by class name
NAMED_RULES: dict[str, Rule] = {"Conv1D": TransposedLinearRule()}


def rule_for(module: nn.Module) -> Rule:
    """The rule of ``module``'s type (or of its nearest registered base class)."""
    for cls in type(module).__mro__:
        if cls in RULES:
            return RULES[cls]
    if type(module).__name__ in NAMED_RULES:
        return NAMED_RULES[type(module).__name__]
    raise NetgrowTypeError(
        f"netgrow has no resize rule for {type(module).__name__}; add one to netgrow.ops.rules.RULES "
        f"(known: {sorted(c.__name__ for c in RULES)})"
    )


@dataclasses.dataclass
class ModulePlan:
    """What to do to one module: per tensor attribute the maps of its resized dims, and the new widths."""

    tensors: Plan
    widths: dict[str, int]
    param_dim: int = 0


def plan(module: nn.Module, maps: dict[Role, DimMap], param_dim: int = 0) -> ModulePlan:
    """The plan for ``module`` given one ``DimMap`` per role (the maps' ``dim`` is ignored)."""
    rule = rule_for(module)
    tensors: Plan = {}
    for role, dm in maps.items():
        for name, dim in rule.dims(module, role, param_dim).items():
            if getattr(module, name, None) is not None:
                tensors.setdefault(name, []).append(dataclasses.replace(dm, dim=dim))
    for dims in tensors.values():
        dims.sort(key=lambda d: d.dim)
    return ModulePlan(tensors, {role: dm.index.numel() for role, dm in maps.items()}, param_dim)


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """A DimMap ready for one device/dtype: clamped index, fresh mask and scale (``None`` when trivial)."""

    index: torch.Tensor
    fresh: torch.Tensor | None
    scale: torch.Tensor | None


Cache = dict[tuple[int, int, torch.device, torch.dtype], _Prepared]


def _prepare(d: DimMap, like: torch.Tensor, cache: Cache) -> _Prepared:
    # the DimMaps of one role share their tensors (e.g. a BatchNorm's four), so prepare each once
    key = (id(d.index), id(d.weight_scale), like.device, like.dtype)
    if key not in cache:
        fresh = d.index < 0
        scale = torch.where(fresh, torch.zeros_like(d.weight_scale), d.weight_scale)
        cache[key] = _Prepared(
            d.index.clamp(min=0).to(like.device),
            fresh.to(like.device) if bool(fresh.any()) else None,
            None if bool((scale == 1).all()) else scale.to(device=like.device, dtype=like.dtype),
        )
    return cache[key]


def _build(old: torch.Tensor, dims: list[DimMap], cache: Cache) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``old`` gathered along every mapped dim and scaled (a new tensor), and the mask of fresh entries.

    Equals ``param_map.gather(old, ..., "weight")``, bit for bit when at most one dim is scaled (as in
    Net2Net, where only the consumers' input dim is). A weight mapped along dims 0 and 1 is gathered
    in one pass straight into the result: an intermediate copy would cost time and, freed between
    the results, leave heap holes worth ~1.5x the model's bytes over a whole-model widen.
    """
    prepared = [(d, _prepare(d, old, cache)) for d in sorted(dims, key=lambda d: d.dim)]
    if [d.dim for d, _ in prepared] == [0, 1]:
        new = old[prepared[0][1].index[:, None], prepared[1][1].index]
    else:
        new = old
        for d, p in prepared:
            new = new.index_select(d.dim, p.index)
    fresh = None
    for d, p in prepared:
        shape = [1] * old.dim()
        shape[d.dim] = -1
        if p.scale is not None and new.is_floating_point():
            new.mul_(p.scale.view(shape))
        if p.fresh is not None:
            m = p.fresh.view(shape)
            fresh = m if fresh is None else fresh | m
    return (new if new is not old else old.clone()), fresh


def apply(
    src: nn.Module,
    dst: nn.Module,
    module_plan: ModulePlan,
    gen: torch.Generator | None = None,
    cache: Cache | None = None,
) -> None:
    """Write ``src``'s tensors, mapped by ``module_plan``, into ``dst`` (may be ``src``) and set its widths.

    Moves all per-tensor state: parameters keep ``requires_grad``, ``.grad`` follows the gradient
    scales, buffers stay buffers; device and dtype are kept. Fresh entries get the rule's init values.
    ``cache`` may be shared by the calls of one op (maps shared between modules are prepared once).
    """
    rule = rule_for(src)
    cache = {} if cache is None else cache
    fresh: dict[str, torch.Tensor] = {}  # tensor name -> mask of fresh entries
    for name, dims in module_plan.tensors.items():
        old = getattr(src, name)
        new, mask = _build(old.detach(), dims, cache)
        if mask is not None:
            fresh[name] = mask
        if isinstance(old, nn.Parameter):
            param = nn.Parameter(new, requires_grad=old.requires_grad)
            if old.grad is not None:
                param.grad = gather(old.grad, ParamSource(name, dims), "grad", new.shape)
            setattr(dst, name, param)
        else:
            dst._buffers[name] = new
    for role, n in module_plan.widths.items():
        rule.set_width(dst, role, n, module_plan.param_dim)
    # fresh units last: their init may depend on the module's new shape (fan-in)
    with torch.no_grad():
        for name, mask in fresh.items():
            t = getattr(dst, name)
            values = rule.fresh(dst, name, t.shape, t.dtype, gen).to(t.device)
            t.copy_(torch.where(mask, values, t))


def _replicate_map(index: torch.Tensor, counts: torch.Tensor | None, role: Role) -> DimMap:
    index = torch.as_tensor(index, dtype=torch.int64)
    if counts is None:
        counts = torch.ones(int(index.max()) + 1 if index.numel() else 0, dtype=torch.float64)
    return DimMap.replicate(0, index, counts, role)


def resize_out(
    module: nn.Module, index: torch.Tensor, counts: torch.Tensor | None = None, gen: torch.Generator | None = None
) -> ModulePlan:
    """Resize ``module``'s output channels in place: new unit j copies old unit ``index[j]`` (-1: fresh)."""
    p = plan(module, {"out": _replicate_map(index, counts, "out")})
    apply(module, module, p, gen=gen)
    return p


def resize_in(
    module: nn.Module, index: torch.Tensor, counts: torch.Tensor | None = None, gen: torch.Generator | None = None
) -> ModulePlan:
    """Resize ``module``'s input channels in place; column j copies ``index[j]`` divided by ``counts[index[j]]``."""
    p = plan(module, {"in": _replicate_map(index, counts, "in")})
    apply(module, module, p, gen=gen)
    return p


def passthrough(
    module: nn.Module, index: torch.Tensor, param_dim: int = 0, gen: torch.Generator | None = None
) -> ModulePlan:
    """Resize ``module``'s per-channel tensors (norm statistics, depthwise filters, ...) in place."""
    p = plan(module, {"pass": _replicate_map(index, None, "pass")}, param_dim)
    apply(module, module, p, gen=gen)
    return p

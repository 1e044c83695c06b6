"""Resizing one module's tensors by a channel mapping, as its registry rule says.

Widening and pruning describe a change of a channel dimension as a ``DimMap`` (new position j takes old
position ``index[j]``, scaled by ``weight_scale[j]``; ``-1`` marks a fresh unit). A layer meets such a
map in one of three *roles*:

- ``"out"``  it produces the channels (Conv/Linear output dim: weight rows, bias),
- ``"in"``   it sums over them (Conv/Linear input dim: weight columns),
- ``"pass"`` it carries per-channel tensors (BatchNorm weight/bias/running stats, LayerNorm/GroupNorm
  affine, PReLU slopes, depthwise-conv filters).

Which of a layer's tensors are indexed along which dim in each role, which attributes hold the widths and
how fresh units are initialised (random pad) is its ``LayerRule`` in the one registry,
``netgrow.graph.rules`` (``netgrow.register_rule`` for a user's own layer). The functional aliases ``resize_out``, ``resize_in`` and
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
from typing import Literal

import torch
from torch import nn

from netgrow.errors import NetgrowTypeError
from netgrow.graph.rules import MODULE_RULES, LayerRule, module_rule
from netgrow.ops.param_map import DimMap, ParamSource, gather

log = logging.getLogger(__name__)

Role = Literal["out", "in", "pass"]
Plan = dict[str, list[DimMap]]  # tensor attribute name -> the maps of its resized dims


def rule_for(module: nn.Module) -> LayerRule:
    """The registry rule of ``module``'s type, which must have tensors that follow channel maps."""
    rule = module_rule(module)
    if rule is None or not rule.has_tensors():
        known = sorted({c.__name__ for c, r in MODULE_RULES.items() if not isinstance(r, LayerRule) or r.has_tensors()})
        raise NetgrowTypeError(
            f"netgrow has no resize rule for {type(module).__name__}; register one with netgrow.register_rule "
            f"(known: {known})"
        )
    return rule


def producer_weight(module: nn.Module) -> tuple[torch.Tensor, int]:
    """A producer's weight matrix (the out tensor also indexed by its inputs) and its output-channel dim."""
    rule = rule_for(module)
    name = next((t for t in rule.out_tensors if t in rule.in_tensors), next(iter(rule.out_tensors)))
    return getattr(module, name), rule.out_tensors[name]


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
        rule.resize_width(dst, role, n, module_plan.param_dim)
    # fresh units last: their init may depend on the module's new shape (fan-in)
    with torch.no_grad():
        for name, mask in fresh.items():
            t = getattr(dst, name)
            values = rule.fresh_values(dst, name, t.shape, t.dtype, gen).to(t.device)
            t.copy_(torch.where(mask, values, t))


def _replicate_map(index: torch.Tensor, counts: torch.Tensor | None, role: Role) -> DimMap:
    index = torch.as_tensor(index, dtype=torch.int64)
    if counts is None:
        counts = torch.ones(int(index.max()) + 1 if index.numel() else 0, dtype=torch.float64)
    return DimMap.replicate(0, index, counts, role)


def _resize_in_place(
    module: nn.Module, role: Role, index: torch.Tensor, counts: torch.Tensor | None, param_dim: int,
    gen: torch.Generator | None,
) -> ModulePlan:
    p = plan(module, {role: _replicate_map(index, counts, role)}, param_dim)
    apply(module, module, p, gen=gen)
    return p


def resize_out(
    module: nn.Module, index: torch.Tensor, counts: torch.Tensor | None = None, gen: torch.Generator | None = None
) -> ModulePlan:
    """Resize ``module``'s output channels in place: new unit j copies old unit ``index[j]`` (-1: fresh)."""
    return _resize_in_place(module, "out", index, counts, 0, gen)


def resize_in(
    module: nn.Module, index: torch.Tensor, counts: torch.Tensor | None = None, gen: torch.Generator | None = None
) -> ModulePlan:
    """Resize ``module``'s input channels in place; column j copies ``index[j]`` divided by ``counts[index[j]]``."""
    return _resize_in_place(module, "in", index, counts, 0, gen)


def passthrough(
    module: nn.Module, index: torch.Tensor, param_dim: int = 0, gen: torch.Generator | None = None
) -> ModulePlan:
    """Resize ``module``'s per-channel tensors (norm statistics, depthwise filters, ...) in place."""
    return _resize_in_place(module, "pass", index, None, param_dim, gen)

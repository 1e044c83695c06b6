"""Net2WiderNet (Chen et al. 2016, section 2.3) and the random-pad baseline over channel groups.

A group of width n widened to q gets one mapping g shared by every tensor of the group:
g(j) = j for j < n, and g(j) a uniform sample with replacement from [0, n) for j >= n. Producers copy
their output slices by g, pass-through layers copy their per-channel tensors by g, consumers copy
their input slices by g and divide them by the replication count |{x : g(x) = g(j)}|, so the widened
network computes exactly the same function. ``noise > 0`` perturbs the copies' incoming weights to
break the symmetry (the paper's advice). Groups under a LayerNorm/GroupNorm grow by whole multiples
with a uniform mapping (g(j) = j mod n), which keeps their statistics.

``resize_groups`` is the surgery shared with ``netgrow.ops.prune``: any per-group index map, applied
through the per-layer rules of ``netgrow.ops.rules``.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netgrow.errors import LockedGroupError, NetgrowTypeError, NetgrowValueError
from netgrow.graph.example_input import check_example_input
from netgrow.graph.groups import ChannelGraph, ChannelGroup, Layout, analyse, names_a_size
from netgrow.ops import rules
from netgrow.ops.param_map import DimMap, ParamMap, ParamSource, gather, note_origin, set_param_map
from netgrow.ops.replay import example_input as zeros_input
from netgrow.ops.verify import verify_preserved
from netgrow.spec import append_record

log = logging.getLogger(__name__)

METHODS = ("net2net", "random_pad")


@dataclass(frozen=True)
class GroupMap:
    """New unit j of a group takes old unit ``index[j]`` (-1: fresh); consumers divide by ``counts[k]``."""

    index: torch.Tensor  # int64 (new width,)
    counts: torch.Tensor  # float64 (old width,), 1 where nothing is divided

    @staticmethod
    def identity(width: int) -> "GroupMap":
        return GroupMap(torch.arange(width), torch.ones(width, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ surgery
def layout_map(graph: ChannelGraph, layout: Layout, maps: dict[int, GroupMap]) -> GroupMap | None:
    """The map of a whole dimension made of ``layout``'s segments (cat offsets, flatten blocks).

    ``None`` when none of its groups changes.
    """
    if not any(s.group in maps for s in layout):
        return None
    index, counts = [], []
    offset = 0
    for s in layout:
        width = graph.groups[s.group].width
        gm = maps.get(s.group) or GroupMap.identity(width)
        idx, cnt = gm.index, gm.counts
        if s.block > 1:  # channel c owns features [c*block, (c+1)*block)
            fresh = idx.repeat_interleave(s.block) < 0
            idx = (idx[:, None] * s.block + torch.arange(s.block)).flatten()
            idx[fresh] = -1
            cnt = cnt.repeat_interleave(s.block)
        index.append(torch.where(idx >= 0, idx + offset, idx))
        counts.append(cnt)
        offset += width * s.block
    return GroupMap(torch.cat(index), torch.cat(counts))


def _placeholder(t: torch.Tensor) -> torch.Tensor:
    empty = torch.empty(0, dtype=t.dtype, device=t.device)
    return nn.Parameter(empty, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else empty


def resize_groups(
    model: nn.Module, graph: ChannelGraph, maps: dict[int, GroupMap], gen: torch.Generator | None = None
) -> tuple[nn.Module, ParamMap]:
    """A copy of ``model`` with every group in ``maps`` remapped; ``model`` itself is only read.

    Returns the new model and the ``ParamMap`` from ``model``'s tensors to the new ones.
    """
    plans: dict[str, rules.ModulePlan] = {}
    for name, use in graph.modules.items():
        if use.kind == "param":
            continue
        role_maps: dict[str, DimMap] = {}
        for role, layout in (("out", use.out_layout), ("in", use.consumes), ("pass", use.carries)):
            gm = layout_map(graph, layout, maps) if layout else None
            if gm is not None:
                role_maps[role] = DimMap.replicate(0, gm.index, gm.counts, role)  # type: ignore[arg-type]
        if role_maps:
            plans[name] = rules.plan(model.get_submodule(name), role_maps, use.param_dim)  # type: ignore[arg-type]
    plans.update(param_plans(graph, maps))
    keep_ties(model, graph, plans)

    # Copy everything except the tensors about to be rebuilt: they would be copied only to be thrown away.
    memo: dict[int, Any] = {}
    for name, p in plans.items():
        is_param = name in graph.modules and graph.modules[name].kind == "param"
        module = model.get_submodule(name.rpartition(".")[0] if is_param else name)
        for tname in p.tensors:
            t = getattr(module, tname)
            memo[id(t)] = _placeholder(t)
    new = copy.deepcopy(model, memo)
    note_origin(new, model)
    cache: rules.Cache = {}
    for name, p in plans.items():
        if name in graph.modules and graph.modules[name].kind == "param":
            apply_param(model, new, name, p, cache)
        else:
            rules.apply(model.get_submodule(name), new.get_submodule(name), p, gen, cache)
    share_ties(model, new)
    set_size_attributes(new, graph, maps)
    # deepcopy drops Parameter.grad; an op keeps all per-parameter state
    new_params = dict(new.named_parameters())
    for full, old_p in model.named_parameters():
        if old_p.grad is not None and new_params[full].grad is None:
            new_params[full].grad = old_p.grad.clone()

    pm: ParamMap = {}
    for full, _ in [*new.named_parameters(), *new.named_buffers()]:
        owner, _, tname = full.rpartition(".")
        p = plans.get(full) or plans.get(owner)
        pm[full] = ParamSource(full, list(p.tensors.get(tname, [])) if p else [])
    return new, pm


def param_plans(graph: ChannelGraph, maps: dict[int, GroupMap]) -> dict[str, rules.ModulePlan]:
    """Plans for parameters used directly in forward (an RMSNorm weight, a positional parameter): copied by g."""
    out: dict[str, rules.ModulePlan] = {}
    for name, use in graph.modules.items():
        if use.kind != "param":
            continue
        dims = []
        gm = layout_map(graph, use.carries, maps) if use.carries else None
        if gm is not None:
            dims.append(DimMap.replicate(use.param_dim, gm.index, gm.counts, "pass"))
        gm = layout_map(graph, use.consumes, maps) if use.consumes else None
        if gm is not None:
            dims.append(DimMap.replicate(use.in_dim, gm.index, gm.counts, "in"))
        if dims:
            out[name] = rules.ModulePlan({name.rpartition(".")[2]: sorted(dims, key=lambda d: d.dim)}, {})
    return out


def apply_param(model: nn.Module, new: nn.Module, name: str, p: rules.ModulePlan, cache: rules.Cache) -> None:
    """Write the mapped parameter ``name`` of ``model`` into ``new`` (no rule: no width attribute to update)."""
    owner, _, tname = name.rpartition(".")
    old = getattr(model.get_submodule(owner), tname)
    built, _ = rules._build(old.detach(), p.tensors[tname], cache)
    param = nn.Parameter(built, requires_grad=old.requires_grad)
    if old.grad is not None:
        param.grad = gather(old.grad, ParamSource(name, p.tensors[tname]), "grad", built.shape)
    setattr(new.get_submodule(owner), tname, param)


def tied_parameters(model: nn.Module) -> list[list[tuple[str, str]]]:
    """Every parameter registered under more than one (module, attribute), e.g. an embedding tied to the head."""
    where: dict[int, list[tuple[str, str]]] = {}
    for mname, m in model.named_modules(remove_duplicate=False):
        for pname, p in m._parameters.items():
            if p is not None and (mname, pname) not in where.get(id(p), []):
                where.setdefault(id(p), []).append((mname, pname))
    return [v for v in where.values() if len(v) > 1]


def _as_role(dm: DimMap, role: str) -> DimMap:
    """``dm`` with the weight/gradient scales of another role (the counts are read back from the scales)."""
    c = 1.0 / (dm.grad_scale if bool((dm.weight_scale == 1).all()) else dm.weight_scale)
    one = torch.ones_like(c)
    return DimMap(dm.dim, dm.index, 1.0 / c, one) if role == "in" else DimMap(dm.dim, dm.index, one, 1.0 / c)


def keep_ties(model: nn.Module, graph: ChannelGraph, plans: dict[str, rules.ModulePlan]) -> None:
    """Rewrite the plans so each tied parameter is built once, the same for all its users.

    A weight tied between a producer (embedding: rows copied, scale 1) and a consumer (output head:
    columns divided by the replication count c) cannot be both. The tie is kept by copying it (scale 1)
    and moving the division by c into the channel-wise affine (LayerNorm/RMSNorm weight and bias)
    whose output is the head's only input: logits = sum_j (gamma_j / c_j) n_j E_j stay exact. Any
    other tie that would need two different tensors is refused.
    """
    for members in tied_parameters(model):
        planned = [(m, a) for m, a in members if m in plans and a in plans[m].tensors]
        if not planned:
            continue
        where = ", ".join(f"{m}.{a}" for m, a in members)
        if len(planned) != len(members):
            missing = [f"{m}.{a}" for m, a in members if (m, a) not in planned]
            raise NetgrowValueError(
                f"the tied parameter {where} would be resized for some of its uses but not for {missing}; "
                f"netgrow keeps ties or refuses: untie it, or leave its channel group out of the op"
            )
        first = plans[planned[0][0]].tensors[planned[0][1]]
        for m, a in planned[1:]:
            dims = plans[m].tensors[a]
            if [d.dim for d in dims] != [d.dim for d in first] or any(
                not torch.equal(x.index, y.index) for x, y in zip(dims, first)
            ):
                raise NetgrowValueError(
                    f"the tied parameter {where} would be mapped differently by its uses; netgrow cannot keep "
                    f"this tie: untie it, or leave its channel groups out of the op"
                )
        for m, a in planned:
            dims = plans[m].tensors[a]
            divided = [d for d in dims if not bool((d.weight_scale == 1).all())]
            if not divided:
                continue
            use = graph.modules.get(m)
            feed = use.feeds_from if use is not None else None
            feed_plan = plans.get(feed or "")
            if feed is None or feed_plan is None or len(divided) != 1:
                raise NetgrowValueError(
                    f"the tied parameter {where}: {m!r} sums over replicated channels and would need its copy "
                    f"divided, which would break the tie; netgrow keeps such a tie only when a LayerNorm/RMSNorm "
                    f"affine feeds {m!r} directly (it takes the division). Untie the weights, or leave the "
                    f"group out of the op"
                )
            plans[m].tensors[a] = [_as_role(d, "pass") for d in dims]
            for tname, fdims in feed_plan.tensors.items():
                if tname in ("weight", "bias"):
                    feed_plan.tensors[tname] = [_as_role(d, "in") for d in fdims]


def set_size_attributes(new: nn.Module, graph: ChannelGraph, maps: dict[int, GroupMap]) -> None:
    """Update the int attributes a forward reads its split/view sizes from (``GPT2Attention.split_size``).

    Only attributes of the module whose forward used the size, and only those equal to it, change.
    """
    for path, size, layout, attrs in graph.sizes:
        gm = layout_map(graph, layout, maps) if layout else None
        if gm is None:
            continue
        module = new.get_submodule(path)
        for attr, value in list(vars(module).items()):
            if type(value) is int and value == size and names_a_size(attr, attrs):
                setattr(module, attr, int(gm.index.numel()))


def share_ties(model: nn.Module, new: nn.Module) -> None:
    """Register the one new tensor of each tied parameter under all its names again."""
    for members in tied_parameters(model):
        m0, a0 = members[0]
        shared = getattr(new.get_submodule(m0), a0)
        for m, a in members[1:]:
            setattr(new.get_submodule(m), a, shared)


# ------------------------------------------------------------------------------------------ mappings
def net2net_map(n: int, q: int, gen: torch.Generator, uniform: bool = False) -> GroupMap:
    """g(j) = j for j < n; g(j) uniform with replacement from [0, n) for j >= n (``uniform``: j mod n)."""
    if uniform:
        index = torch.arange(q) % n
    else:
        index = torch.cat([torch.arange(n), torch.randint(0, n, (q - n,), generator=gen)])
    counts = torch.bincount(index, minlength=n).to(torch.float64)
    return GroupMap(index, counts)


def random_pad_map(n: int, q: int) -> GroupMap:
    """Old units in place, q - n fresh units; nothing is divided."""
    index = torch.cat([torch.arange(n), torch.full((q - n,), -1, dtype=torch.int64)])
    return GroupMap(index, torch.ones(n, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ validation
def _module_names(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if n}


def group_for_name(graph: ChannelGraph, model: nn.Module, name: Any, op: str) -> ChannelGroup:
    """The group a ``widths`` key names (any of its producers); errors name the module and the fix."""
    if not isinstance(name, str):
        raise NetgrowTypeError(f"{op}: widths keys must be module names (str), got {name!r} ({type(name).__name__})")
    group = graph.producer_group(name)
    if group is not None:
        return group
    resizable = [g.name for g in graph.groups if g.resizable]
    modules = _module_names(model)
    if name in modules:
        touching = [g.name for g in graph.groups_touching(name) if g.producers]
        hint = f"name the group by a producer instead, e.g. {touching}" if touching else f"resizable: {resizable}"
        raise NetgrowValueError(
            f"{op}: module {name!r} ({type(modules[name]).__name__}) does not produce a channel group "
            f"(only Conv/Linear layers do); {hint}"
        )
    raise NetgrowValueError(
        f"{op}: model {type(model).__name__} has no module named {name!r}; name a Conv/Linear producer "
        f"from model.named_modules(), e.g. {resizable[:8]}"
    )


def resolve_widths(graph: ChannelGraph, model: nn.Module, widths: Any) -> dict[int, int]:
    """Validate ``widths`` (factor or {producer: width}) and return {group id: new width} for groups that grow."""
    if isinstance(widths, bool) or not isinstance(widths, (numbers.Real, dict)):
        raise NetgrowTypeError(
            f"widen: widths must be a float factor or a dict {{producer name: new width}}, got {type(widths).__name__}"
        )
    out: dict[int, int] = {}
    if not isinstance(widths, dict):
        factor = float(widths)
        if not math.isfinite(factor) or factor < 1.0:
            raise NetgrowValueError(
                f"widen: factor {widths!r} must be a finite number >= 1 (1.5 = every hidden group 50% wider); "
                f"use netgrow.prune to make a model narrower"
            )
        for g in graph.groups:
            q = round(g.width * factor)
            if not g.resizable or q <= g.width:
                continue
            if g.uniform and q % g.width:
                log.warning("widen: group %r keeps width %d: %s", g.name, g.width, g.uniform)
                continue
            out[g.id] = q
        hidden = [g for g in graph.groups if g.producers and not g.is_output]
        if not out and hidden and all(g.locked for g in hidden):
            raise LockedGroupError(
                f"widen: every hidden channel group is locked, so nothing in {type(model).__name__} can be widened: "
                f"{locked_reasons(hidden)}. Change the model so these reasons go away"
            )
        return out
    named: dict[int, str] = {}
    for name, q in widths.items():
        g = group_for_name(graph, model, name, "widen")
        if isinstance(q, bool) or not isinstance(q, numbers.Integral):
            raise NetgrowTypeError(f"widen: the new width of {name!r} must be an int, got {q!r} ({type(q).__name__})")
        q = int(q)
        if g.is_output:
            raise NetgrowValueError(
                f"widen: {name!r} produces the network output (width {g.width}), which is never widened; "
                f"widen hidden layers only, or use netgrow.expand_classes to add output classes"
            )
        if g.locked:
            raise LockedGroupError(
                f"widen: cannot widen {name!r} to {q}: its channel group (producers {g.producers}) is locked: "
                f"{g.reason}. Leave it out of widths, or change the model so the reason goes away"
            )
        if q < g.width:
            raise NetgrowValueError(
                f"widen: new width {q} for {name!r} is narrower than its current width {g.width}; "
                f"widen only grows, use netgrow.prune to shrink"
            )
        if g.uniform and q % g.width:
            raise NetgrowValueError(
                f"widen: width {q} for {name!r} is not a whole multiple of its width {g.width}: {g.uniform}. "
                f"Use {2 * g.width}, {3 * g.width}, ..."
            )
        if g.id in named and out.get(g.id, g.width) != q:
            raise NetgrowValueError(
                f"widen: {named[g.id]!r} and {name!r} produce the same channel group but were given different "
                f"widths ({out.get(g.id, g.width)} and {q}); give one width per group"
            )
        named[g.id] = name
        if q > g.width:
            out[g.id] = q
    return out


def locked_reasons(groups: list[ChannelGroup]) -> str:
    """``group 'conv1': <reason>; ...`` for an error that lists why each group cannot be resized."""
    return "; ".join(f"group {g.name!r}: {g.reason or g.uniform}" for g in groups)


def dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


# ------------------------------------------------------------------------------------------ the op
def _add_noise(
    old: nn.Module, new: nn.Module, graph: ChannelGraph, maps: dict[int, GroupMap], noise: float, gen: torch.Generator
) -> None:
    """Gaussian noise of std ``noise * std(W)`` on the copies' incoming weights (units j >= n) only."""
    with torch.no_grad():
        for gid in maps:
            g = graph.groups[gid]
            for name in g.producers:
                w_old, _ = rules.producer_weight(old.get_submodule(name))
                w_new, dim = rules.producer_weight(new.get_submodule(name))
                copies = w_new.narrow(dim, g.width, w_new.shape[dim] - g.width)
                std = float(w_old.detach().double().std()) if w_old.numel() > 1 else 1.0
                z = torch.randn(copies.shape, generator=gen, dtype=torch.float64) * (noise * std)
                copies.add_(z.to(device=copies.device, dtype=copies.dtype))


def widen(
    model: nn.Module,
    widths: float | dict[str, int],
    example_input: torch.Tensor,
    noise: float = 0.0,
    seed: int | None = None,
    method: str = "net2net",
    verify: bool = True,
) -> nn.Module:
    """A wider copy of ``model`` (Net2WiderNet); ``model`` is never changed.

    ``widths``: a factor for every resizable hidden group (new width = round(width * factor)), or
    ``{producer name: new width}`` where any producer of a group names it; a group of attention heads
    counts heads (``ChannelGroup.unit`` = head_dim channels each; under GQA, key/value groups), so
    ``{"attn.c_attn": 8}`` means 8 heads. ``noise`` > 0 perturbs the
    replicated copies (not function-preserving then). ``method="random_pad"`` adds randomly initialised
    units instead (the paper's baseline). ``seed`` fixes the mapping (drawn from torch's global RNG if
    ``None``, and recorded). With ``verify`` the result is checked against ``model`` on ``example_input``
    in eval mode (net2net without noise only).

    Example::

        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> wide = widen(net, {"0": 12}, torch.randn(5, 4), seed=0)
        >>> wide[0].out_features, wide[2].in_features
        (12, 12)
    """
    check_example_input(model, example_input, "widen")
    if method not in METHODS:
        raise NetgrowValueError(f"widen: unknown method {method!r}; use one of {METHODS}")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not math.isfinite(noise) or noise < 0:
        raise NetgrowValueError(f"widen: noise must be a finite number >= 0 (e.g. 0.01), got {noise!r}")
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise NetgrowTypeError(f"widen: seed must be an int or None, got {seed!r}")
    gen = torch.Generator().manual_seed(int(seed))

    graph = analyse(model, example_input)
    targets = resolve_widths(graph, model, widths)
    maps: dict[int, GroupMap] = {}
    for gid in sorted(targets):
        g, q = graph.groups[gid], targets[gid]
        if method == "random_pad":
            maps[gid] = random_pad_map(g.width, q)
        else:
            maps[gid] = net2net_map(g.width, q, gen, uniform=bool(g.uniform))
    new, pm = resize_groups(model, graph, maps, gen)
    if noise > 0 and method == "net2net":
        _add_noise(model, new, graph, maps, float(noise), gen)

    record = {
        "op": "widen",
        "widths": {graph.groups[gid].name: q for gid, q in sorted(targets.items())},
        "seed": int(seed),
        "noise": float(noise),
        "method": method,
        "input_shape": list(example_input.shape),
        "input_dtype": dtype_name(example_input),
    }
    append_record(new, record)
    set_param_map(new, pm)
    if verify and method == "net2net" and noise == 0 and maps:
        verify_preserved(model, new, example_input, "widen")
    log.info("widen: %d groups widened %s", len(maps), record["widths"])
    return new


def replay(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """Rebuild the shapes of a recorded widen (the weights are loaded afterwards)."""
    return widen(
        model,
        dict(record["widths"]),
        zeros_input(record),
        noise=record.get("noise", 0.0),
        seed=record.get("seed"),
        method=record.get("method", "net2net"),
        verify=False,
    )

"""How the parameters of a grown model derive from those of the model it was grown from.

Every op attaches a ``ParamMap`` to the model it returns (``param_map(new_model)``). The trainer uses it
to carry optimizer state (momentum, Adam moments) across growth; tests use it to check that gradients
follow the widening.

For a new tensor ``T_new`` with source ``T_old`` and per-dimension maps ``DimMap(dim, index, w, g)``::

    T_new[..., j, ...] = T_old[..., index[j], ...] * w[j]      (along each mapped dim; -1 = fresh unit)
    grad_new[..., j, ...] = grad_old[..., index[j], ...] * g[j]  (right after an exact widen)

Replicated producer units (a unit copied c times) have ``w = 1, g = 1/c``; the consumers' divided slices
have ``w = 1/c, g = 1``. Optimizer first moments follow ``g``, second moments ``g**2``. Fresh entries
(index -1, or a whole tensor with ``source=None``) start with zero optimizer state.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

_MAP_ATTR = "_netgrow_param_map"
_ORIGIN_ATTR = "_netgrow_origin"  # set by note_origin on an op's fresh copy, consumed by set_param_map
_LINEAGE_ATTR = "_netgrow_lineage"


@dataclass
class DimMap:
    """The mapping along one dimension of a tensor: new position j <- old position ``index[j]``."""

    dim: int
    index: torch.Tensor  # int64 (new_size,), -1 marks a fresh unit
    weight_scale: torch.Tensor  # float64 (new_size,)
    grad_scale: torch.Tensor  # float64 (new_size,)

    @staticmethod
    def replicate(dim: int, index: torch.Tensor, counts: torch.Tensor, role: Literal["out", "in", "pass"]) -> "DimMap":
        """The Net2WiderNet map for one dim; ``counts[k]`` is how often old unit k appears in ``index``.

        ``role="out"``/``"pass"``: producer rows and pass-through params (copied; gradient 1/c).
        ``role="in"``: consumer columns (divided by c; gradient copied).
        """
        index = index.to(torch.int64)
        c = torch.ones(index.numel(), dtype=torch.float64)
        kept = index >= 0
        c[kept] = counts.to(torch.float64)[index[kept]]
        one = torch.ones_like(c)
        if role == "in":
            return DimMap(dim, index, 1.0 / c, one)
        return DimMap(dim, index, one, 1.0 / c)


@dataclass
class ParamSource:
    """Where one parameter or buffer of the new model comes from. ``source=None``: fresh."""

    source: str | None
    dims: list[DimMap] = field(default_factory=list)


ParamMap = dict[str, ParamSource]


def identity_map(model: nn.Module, rename: dict[str, str] | None = None) -> ParamMap:
    """A map in which every parameter and buffer of ``model`` comes unchanged from the same name.

    ``rename`` maps new names to old ones where an op moved a tensor (e.g. ``"f.3.weight" -> "f.2.weight"``).
    """
    rename = rename or {}
    return {name: ParamSource(rename.get(name, name)) for name, _ in _named_tensors(model)}


def _named_tensors(model: nn.Module):
    yield from model.named_parameters()
    yield from model.named_buffers()


def gather(old: torch.Tensor, src: ParamSource, kind: Literal["weight", "grad", "grad_sq"], new_shape: torch.Size) -> torch.Tensor:
    """Map one old tensor to the new shape; fresh entries are 0 (for weights: the caller overwrites them)."""
    out = old
    for dm in src.dims:
        idx = dm.index.to(old.device)
        fresh = idx < 0
        out = out.index_select(dm.dim, idx.clamp(min=0))
        scale = {"weight": dm.weight_scale, "grad": dm.grad_scale, "grad_sq": dm.grad_scale**2}[kind]
        scale = torch.where(fresh, torch.zeros_like(scale), scale).to(device=old.device, dtype=old.dtype)
        shape = [1] * out.dim()
        shape[dm.dim] = -1
        if out.is_floating_point():
            out = out * scale.view(shape)
        elif fresh.any():
            out = out * (~fresh).to(out.dtype).view(shape)
    if out.shape != new_shape:
        raise ValueError(f"param map produced shape {tuple(out.shape)}, expected {tuple(new_shape)}")
    return out


def map_tensors(
    param_map: ParamMap,
    old: dict[str, torch.Tensor],
    new_shapes: dict[str, torch.Size],
    kind: Literal["weight", "grad", "grad_sq"] = "grad",
) -> dict[str, torch.Tensor]:
    """Map a dict of old tensors (by old name) to new names/shapes; fresh tensors are zeros."""
    out: dict[str, torch.Tensor] = {}
    for name, shape in new_shapes.items():
        src = param_map.get(name)
        if src is None or src.source is None or src.source not in old:
            ref = next(iter(old.values()), torch.zeros(()))
            out[name] = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
        else:
            out[name] = gather(old[src.source], src, kind, shape)
    return out


def compose(first: ParamMap, second: ParamMap) -> ParamMap:
    """The map A -> C from ``first`` (A -> B) and ``second`` (B -> C)."""
    out: ParamMap = {}
    for name, src2 in second.items():
        if src2.source is None or src2.source not in first or first[src2.source].source is None:
            out[name] = ParamSource(None)
            continue
        src1 = first[src2.source]
        dims1 = {d.dim: d for d in src1.dims}
        dims2 = {d.dim: d for d in src2.dims}
        dims: list[DimMap] = []
        for dim in sorted(set(dims1) | set(dims2)):
            d1, d2 = dims1.get(dim), dims2.get(dim)
            if d2 is None:
                dims.append(d1)  # type: ignore[arg-type]
            elif d1 is None:
                dims.append(d2)
            else:
                fresh = d2.index < 0
                i2 = d2.index.clamp(min=0)
                index = torch.where(fresh, torch.full_like(d2.index, -1), d1.index[i2])
                dims.append(
                    DimMap(dim, index, d1.weight_scale[i2] * d2.weight_scale, d1.grad_scale[i2] * d2.grad_scale)
                )
        out[name] = ParamSource(src1.source, dims)
    return out


def param_map(model: nn.Module) -> ParamMap | None:
    """The map from the model the last op was applied to, to ``model`` (``None`` if no op made it)."""
    return getattr(model, _MAP_ATTR, None)


def set_param_map(model: nn.Module, pm: ParamMap) -> None:
    """Attach ``pm`` (the map from the op's input to ``model``); the first call after ``note_origin``
    also extends the model's lineage (see :func:`lineage`)."""
    object.__setattr__(model, _MAP_ATTR, pm)
    origin = model.__dict__.pop(_ORIGIN_ATTR, None)
    if origin is not None:
        refs, ancestors = origin
        chain = [Ancestor(a.params, compose(a.map, pm)) for a in ancestors if a.alive()]
        object.__setattr__(model, _LINEAGE_ATTR, [*chain, Ancestor(refs, pm)])


# ------------------------------------------------------------------------------------------------ lineage


@dataclass
class Ancestor:
    """A model an op chain started from: weak references to its parameters (by name) and the composed
    map from it to the model holding this record. Weak: the record never keeps an old model alive; an
    optimizer built for the old model does (it holds the parameters)."""

    params: dict[str, weakref.ref]
    map: ParamMap

    def alive(self) -> bool:
        return any(r() is not None for r in self.params.values())

    def __deepcopy__(self, memo: dict[int, object]) -> "Ancestor":
        return self  # shared, never mutated: a copied model keeps the same ancestry

    def __getstate__(self) -> dict[str, object]:
        return {"params": {}, "map": {}}  # weak references do not survive pickling: a dead record

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)


def note_origin(new: nn.Module, old: nn.Module) -> None:
    """Record on an op's fresh copy ``new`` that it was made from ``old`` (called right after the copy;
    the op's ``set_param_map`` then adds ``old`` to ``new``'s lineage)."""
    refs = {name: weakref.ref(p) for name, p in old.named_parameters()}
    object.__setattr__(new, _ORIGIN_ATTR, (refs, list(getattr(old, _LINEAGE_ATTR, []))))


def lineage(model: nn.Module) -> list[Ancestor]:
    """The models ``model`` was grown from by netgrow ops, oldest first, each with the composed
    ``ParamMap`` to ``model`` (used by ``netgrow.carry_optimizer`` to find an optimizer's parameters)."""
    return [a for a in getattr(model, _LINEAGE_ATTR, []) if a.alive()]

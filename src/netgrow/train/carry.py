"""Carry optimizer state across growth through the op's ``ParamMap``.

Right after an exact widen the grown model's gradient is the old gradient mapped through the widening:
``grad_new[..., j, ...] = grad_old[..., index[j], ...] * grad_scale[j]`` (``netgrow.ops.param_map``).
Optimizer first moments are running sums of gradients, so they map with ``grad_scale``; second moments
are running sums of squared gradients, so they map with ``grad_scale ** 2``. Carried this way, the new
optimizer's state is exactly what it would hold had it always trained the wide model along the same
gradients, and it keeps following the correspondence on the next step. (Coupled weight decay -- SGD's or
Adam's ``weight_decay`` -- adds ``wd * w`` to the gradient, which follows the weights' map instead, so the
correspondence is then approximate; AdamW's decoupled decay leaves the moments exact.)

State keys and how they map (``"grad"``: like the gradient, x g; ``"grad_sq"``: x g**2; ``"update"``:
quantities in units of a normalised step, which do not scale with the gradient: copied by index):

=============================================  ==============================================
``momentum_buffer`` (SGD), ``exp_avg`` (Adam,  ``"grad"``  (running sums of gradients)
AdamW, NAdam, RAdam), ``grad_avg`` (centered
RMSprop), ``prev`` (Rprop)
``exp_avg_sq``, ``max_exp_avg_sq`` (Adam,      ``"grad_sq"`` (running sums of squared gradients)
AdamW), ``square_avg`` (RMSprop, Adadelta),
``sum`` (Adagrad)
``momentum_buffer`` of RMSprop (a sum of       ``"update"``
``g / sqrt(v)``), ``acc_delta`` (Adadelta),
``step_size`` (Rprop)
``ax`` (ASGD's parameter average)              ``"weight"``
scalars: ``step``, ``mu_product``, ...         copied
=============================================  ==============================================

Fresh parameters (``source=None``) get no state, so the optimizer initialises them as new (zeros,
``step`` 0); fresh units inside a carried tensor (index -1) get zero moments. The hyper-parameters
(``lr``, ``betas``, ``weight_decay`` ...) are those of the new optimizer: only per-parameter state moves.
A parameter whose state has a tensor key not listed above starts fresh (with a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.ops.param_map import DimMap, ParamMap, ParamSource, gather

logger = logging.getLogger(__name__)

Kind = Literal["grad", "grad_sq", "update", "weight"]

KIND_BY_KEY: dict[str, Kind] = {
    "momentum_buffer": "grad",
    "exp_avg": "grad",
    "grad_avg": "grad",
    "prev": "grad",
    "exp_avg_sq": "grad_sq",
    "max_exp_avg_sq": "grad_sq",
    "square_avg": "grad_sq",
    "sum": "grad_sq",
    "acc_delta": "update",
    "step_size": "update",
    "ax": "weight",
}

# RMSprop's momentum buffer accumulates g / sqrt(v): scale-free, unlike SGD's sum of gradients
KIND_OVERRIDES: dict[type[torch.optim.Optimizer], dict[str, Kind]] = {
    torch.optim.RMSprop: {"momentum_buffer": "update"},
}

# prefixes wrappers add to parameter names (DistributedDataParallel, torch.compile)
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _strip(name: str, known: Iterable[str] | dict[str, Any]) -> str:
    """``name`` without wrapper prefixes, if that is what makes it a known name."""
    while name not in known and name.startswith(_WRAPPER_PREFIXES):
        name = name.split(".", 1)[1]
    return name


def _names_by_identity(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in reversed(list(model.named_parameters()))}  # first name wins for tied params


def _old_state_by_name(
    old_state: dict[str, Any] | torch.optim.Optimizer, old_model: nn.Module
) -> dict[str, dict[str, Any]]:
    params = dict(old_model.named_parameters())
    if isinstance(old_state, torch.optim.Optimizer):
        ids = _names_by_identity(old_model)
        out = {}
        for p, st in old_state.state.items():
            if id(p) not in ids:
                raise NetgrowValueError(
                    "carry_optimizer_state: the old optimizer holds a parameter that is not in old_model; "
                    "pass the model the optimizer was built for"
                )
            out[ids[id(p)]] = st
        return out
    if not isinstance(old_state, dict) or "state" not in old_state or "param_groups" not in old_state:
        raise NetgrowTypeError(
            f"carry_optimizer_state: old_state must be optimizer.state_dict() or the optimizer itself, "
            f"got {type(old_state).__name__}"
        )
    groups = old_state["param_groups"]
    if all("param_names" in g for g in groups):  # optimizer built from model.named_parameters()
        pairs = [(i, _strip(n, params)) for g in groups for i, n in zip(g["params"], g["param_names"])]
    else:
        ids = [i for g in groups for i in g["params"]]
        candidates = [n for n, _ in old_model.named_parameters()]
        if len(ids) != len(candidates):
            candidates = [n for n, p in old_model.named_parameters() if p.requires_grad]
        if len(ids) != len(candidates):
            raise NetgrowValueError(
                f"carry_optimizer_state: the old optimizer state covers {len(ids)} parameters but old_model "
                f"has {len(list(old_model.parameters()))}; cannot tell which state belongs to which parameter. "
                f"Build the optimizer with model.named_parameters() (its state_dict then names them) or pass "
                f"the optimizer itself"
            )
        pairs = list(zip(ids, candidates))
    out = {}
    for i, name in pairs:
        st = old_state["state"].get(i)
        if st is None:
            continue
        if name not in params:
            raise NetgrowValueError(
                f"carry_optimizer_state: the old optimizer state names parameter {name!r}, which old_model "
                f"does not have; pass the model the optimizer was built for"
            )
        for key, v in st.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape != params[name].shape:
                raise NetgrowValueError(
                    f"carry_optimizer_state: state {key!r} of {name!r} has shape {tuple(v.shape)} but the "
                    f"parameter has {tuple(params[name].shape)}; the state does not belong to old_model"
                )
        out[name] = st
    return out


def state_kinds(optimizer: torch.optim.Optimizer) -> dict[str, Kind]:
    """How each per-parameter state key of ``optimizer`` maps across growth (see the module docstring)."""
    kinds = dict(KIND_BY_KEY)
    for cls, override in KIND_OVERRIDES.items():
        if isinstance(optimizer, cls):
            kinds.update(override)
    return kinds


def _index_only(src: ParamSource) -> ParamSource:
    """The same index maps with unit scales (fresh units still come out as zeros)."""
    dims = [DimMap(d.dim, d.index, torch.ones_like(d.weight_scale), torch.ones_like(d.grad_scale)) for d in src.dims]
    return ParamSource(src.source, dims)


def _map_state(
    name: str, st: dict[str, Any], src: ParamSource, p: torch.Tensor, kinds: dict[str, Kind]
) -> dict[str, Any] | None:
    new: dict[str, Any] = {}
    for key, v in st.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            kind = kinds.get(key)
            if kind is None:
                logger.warning("carry_optimizer_state: unknown state %r of %r; the parameter starts fresh", key, name)
                return None
            how, gkind = (_index_only(src), "grad") if kind == "update" else (src, kind)
            try:
                new[key] = gather(v.detach(), how, gkind, p.shape).to(p.device).clone()
            except ValueError as exc:
                raise NetgrowValueError(f"carry_optimizer_state: cannot map state {key!r} of {name!r}: {exc}") from None
        else:
            new[key] = v.clone() if isinstance(v, torch.Tensor) else v
    return new


def carry_optimizer_state(
    old_state: dict[str, Any] | torch.optim.Optimizer,
    old_model: nn.Module,
    new_optimizer: torch.optim.Optimizer,
    new_model: nn.Module,
    param_map: ParamMap | None,
) -> int:
    """Fill ``new_optimizer``'s per-parameter state from the old optimizer's, mapped through ``param_map``.

    ``old_state``: ``old_optimizer.state_dict()`` (parameters named by ``param_names`` when the optimizer
    was built from ``model.named_parameters()``, else by position over ``old_model.parameters()``) or the
    old optimizer itself. ``param_map``: the map from ``old_model``'s names to ``new_model``'s (as set by
    the op, ``netgrow.ops.param_map.param_map(new_model)``; compose maps across several ops); ``None``
    means the same names and shapes (no growth). Returns the number of parameters that received state.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> old = nn.Linear(2, 2); opt = torch.optim.SGD(old.named_parameters(), lr=0.1, momentum=0.9)
        >>> old(torch.ones(1, 2)).sum().backward(); opt.step()
        >>> new_opt = torch.optim.SGD(old.parameters(), lr=0.01, momentum=0.9)
        >>> carry_optimizer_state(opt.state_dict(), old, new_opt, old, None)
        2
    """
    by_name = _old_state_by_name(old_state, old_model)
    return fill_state(by_name, new_optimizer, new_model, param_map)


def fill_state(
    by_name: dict[str, dict[str, Any]],
    new_optimizer: torch.optim.Optimizer,
    new_model: nn.Module,
    param_map: ParamMap | None,
) -> int:
    """Set ``new_optimizer``'s state from ``by_name`` (old parameter name -> old per-parameter state),
    mapped through ``param_map`` (None: same names and shapes). Returns the number of carried parameters."""
    kinds = state_kinds(new_optimizer)
    new_names = _names_by_identity(new_model)
    carried = 0
    for group in new_optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in new_names:
                raise NetgrowValueError(
                    "carry_optimizer_state: new_optimizer holds a parameter that is not in new_model; "
                    "pass the model the new optimizer was built for"
                )
            name = new_names[id(p)]
            if param_map is None:
                src: ParamSource | None = ParamSource(name)
            else:
                src = param_map.get(_strip(name, param_map))
            if src is None or src.source is None or src.source not in by_name:
                new_optimizer.state.pop(p, None)  # fresh: the optimizer initialises it on its first step
                continue
            mapped = _map_state(name, by_name[src.source], src, p, kinds)
            if mapped is None:
                new_optimizer.state.pop(p, None)
                continue
            new_optimizer.state[p] = mapped
            carried += 1
    logger.debug("carried optimizer state for %d parameters", carried)
    return carried

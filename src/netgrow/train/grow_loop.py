"""Growth inside any training loop: keep the optimizer (and its LR scheduler) across netgrow ops.

``carry_optimizer(optimizer, new_model)`` returns a new optimizer of the same class over the grown model's
parameters: the same param groups and hyper-parameters, and the per-parameter state (momentum, Adam
moments, step counts) mapped through the parameter correspondence of the ops that grew the model
(``netgrow.ops.param_map``; every op records where it was applied, so a chain widen -> deepen ->
expand_classes is followed back to the model the optimizer was built for). ``rebind_scheduler(scheduler,
new_optimizer)`` points an existing ``torch.optim.lr_scheduler`` at the new optimizer at the same
position of its schedule::

    >>> import torch, netgrow
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    >>> model(torch.randn(2, 4)).sum().backward(); opt.step(); sched.step()
    >>> model = netgrow.widen(model, 2.0, torch.randn(1, 4))
    >>> opt = netgrow.carry_optimizer(opt, model)
    >>> sched = netgrow.rebind_scheduler(sched, opt)
    >>> [p.shape[0] for p in opt.param_groups[0]["params"]], sched.last_epoch
    ([16, 16, 3, 3], 1)

Parameters the grown model adds (a deepen's identity block, fresh output rows are inside carried tensors)
join the param group of the nearest old parameter by name and start with fresh state; parameters the old
optimizer did not train stay out. See ``netgrow.train.carry`` for how each state key maps and where the
correspondence is exact.
"""

from __future__ import annotations

import functools
import inspect
import os
import weakref
from typing import Any

import torch
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.ops.param_map import ParamMap, ParamSource, lineage
from netgrow.train.carry import _names_by_identity, _strip, fill_state, state_kinds

# optimizers whose state is not per-parameter (LBFGS keeps flattened history over all parameters)
_UNMAPPABLE = (torch.optim.LBFGS, torch.optim.SparseAdam)
_SUPPORTED = "SGD, Adam, AdamW, RMSprop (also Adagrad, NAdam, RAdam, Adadelta, Rprop)"


def carry_optimizer(optimizer: torch.optim.Optimizer, new_model: nn.Module) -> torch.optim.Optimizer:
    """A new optimizer of ``optimizer``'s class over ``new_model``, with its groups, hyper-parameters and
    per-parameter state mapped from the model ``new_model`` was grown from (see the module docstring).

    Raises ``NetgrowTypeError`` for an optimizer whose state cannot be mapped (e.g. LBFGS), and
    ``NetgrowValueError`` when ``optimizer``'s parameters belong neither to ``new_model`` nor to a model
    it was grown from by netgrow ops. ``optimizer`` and the old model are not changed.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise NetgrowTypeError(f"carry_optimizer: optimizer must be a torch.optim.Optimizer, got "
                               f"{type(optimizer).__name__}")
    if not isinstance(new_model, nn.Module):
        raise NetgrowTypeError(f"carry_optimizer: new_model must be an nn.Module, got {type(new_model).__name__}")
    _check_mappable(optimizer)
    old_names, pm = _origin(optimizer, new_model)
    group_of = {old_names[id(p)]: gi for gi, g in enumerate(optimizer.param_groups) for p in g["params"]}
    groups: list[dict[str, Any]] = [
        {**{k: v for k, v in g.items() if k not in ("params", "param_names")}, "params": [], "names": []}
        for g in optimizer.param_groups
    ]
    fresh: list[tuple[str, nn.Parameter]] = []
    order: dict[str, int] = {}  # position in new_model: each group lists its parameters in model order
    for name, p in new_model.named_parameters():  # each parameter once (tied ones under their first name)
        order[name] = len(order)
        src = ParamSource(name) if pm is None else pm.get(_strip(name, pm))
        if src is not None and src.source in group_of:
            groups[group_of[src.source]]["params"].append(p)
            groups[group_of[src.source]]["names"].append(name)
        elif (src is None or src.source is None) and p.requires_grad:
            fresh.append((name, p))
    for name, p in fresh:
        gi = _nearest_group(name, groups)
        groups[gi]["params"].append(p)
        groups[gi]["names"].append(name)
    named = any("param_names" in g for g in optimizer.param_groups)
    for g in groups:
        pairs = sorted(zip(g.pop("names"), g["params"]), key=lambda item: order[item[0]])
        names, g["params"] = [n for n, _ in pairs], [p for _, p in pairs]
        if named:
            g["param_names"] = names
    cls = type(optimizer)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in optimizer.defaults.items() if k in accepted}  # AdamW: not its internal flags
    try:
        new_opt = cls(groups, **kwargs)
        new_opt.defaults = dict(optimizer.defaults)
    except (TypeError, ValueError) as exc:
        raise NetgrowTypeError(f"carry_optimizer: cannot build a new {type(optimizer).__name__} from the old one's "
                               f"defaults ({exc}); supported: {_SUPPORTED}") from None
    by_name = {old_names[id(p)]: st for p, st in optimizer.state.items() if id(p) in old_names}
    fill_state(by_name, new_opt, new_model, pm)
    return new_opt


def _check_mappable(optimizer: torch.optim.Optimizer) -> None:
    name = type(optimizer).__name__
    if isinstance(optimizer, _UNMAPPABLE):
        raise NetgrowTypeError(f"carry_optimizer: {name} keeps state over all parameters at once, which cannot "
                               f"follow a growth step; supported: {_SUPPORTED}; or build a fresh {name} for the "
                               "grown model")
    kinds = state_kinds(optimizer)
    for st in optimizer.state.values():
        for key, v in st.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and key not in kinds:
                raise NetgrowTypeError(f"carry_optimizer: {name} keeps per-parameter state {key!r}, which netgrow "
                                       f"does not know how to map through a growth step; supported: {_SUPPORTED}")


def _origin(optimizer: torch.optim.Optimizer, new_model: nn.Module) -> tuple[dict[int, str], ParamMap | None]:
    """Names of the optimizer's parameters (by identity) in the model they belong to, and the map from
    that model to ``new_model`` (None: they are ``new_model``'s own)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    own = _names_by_identity(new_model)
    if all(id(p) in own for p in params):
        return own, None
    for ancestor in reversed(lineage(new_model)):  # the most recent model the optimizer belongs to
        names = {}
        for n, ref in reversed(list(ancestor.params.items())):
            p = ref()
            if p is not None:
                names[id(p)] = n
        if all(id(p) in names for p in params):
            return names, ancestor.map
    raise NetgrowValueError(
        "carry_optimizer: the optimizer's parameters belong neither to new_model nor to a model it was grown "
        "from by netgrow ops (widen, deepen, expand_classes, prune, grow); pass the optimizer built for the "
        "model you grew, and the model the ops returned"
    )


def _nearest_group(name: str, groups: list[dict[str, Any]]) -> int:
    """The group holding the parameter whose name shares the longest prefix with ``name`` (0 if none)."""
    best, best_len = 0, -1
    for gi, g in enumerate(groups):
        for other in g["names"]:
            n = len(os.path.commonprefix([name, other]))
            if n > best_len:
                best, best_len = gi, n
    return best


def rebind_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> Any:
    """Point ``scheduler`` (any ``torch.optim.lr_scheduler`` instance, also ``SequentialLR`` /
    ``ChainedScheduler`` / ``ReduceLROnPlateau``) at ``optimizer`` at the same position of its schedule.

    The new optimizer's groups get the old groups' current ``lr`` (and ``initial_lr``), so the next
    ``scheduler.step()`` continues exactly as it would have. Re-binds in place and returns ``scheduler``.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise NetgrowTypeError(f"rebind_scheduler: optimizer must be a torch.optim.Optimizer, got "
                               f"{type(optimizer).__name__}")
    old = getattr(scheduler, "optimizer", None)
    if not isinstance(old, torch.optim.Optimizer):
        raise NetgrowTypeError(f"rebind_scheduler: expected a torch.optim.lr_scheduler instance (with an "
                               f"`optimizer`), got {type(scheduler).__name__}")
    if len(old.param_groups) != len(optimizer.param_groups):
        raise NetgrowValueError(f"rebind_scheduler: the scheduler's optimizer has {len(old.param_groups)} param "
                                f"groups but the new one {len(optimizer.param_groups)}; the schedule is per group, "
                                "so the new optimizer needs the same groups (netgrow.carry_optimizer keeps them)")
    for g_old, g_new in zip(old.param_groups, optimizer.param_groups):
        for key in ("lr", "initial_lr"):
            if key in g_old:
                g_new[key] = g_old[key]
    if hasattr(scheduler, "_schedulers"):  # SequentialLR, ChainedScheduler
        for inner in scheduler._schedulers:
            rebind_scheduler(inner, optimizer)
    scheduler.optimizer = optimizer
    _track_step(optimizer, old)
    return scheduler


def _track_step(optimizer: torch.optim.Optimizer, old: torch.optim.Optimizer) -> None:
    """What an LR scheduler's constructor does to its optimizer: mark ``optimizer.step`` calls, so the
    scheduler's "step() before optimizer.step()" check keeps working."""
    if not hasattr(optimizer.step, "_wrapped_by_lr_sched"):
        func = optimizer.step.__func__  # type: ignore[attr-defined]
        ref = weakref.ref(optimizer)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            opt = ref()
            opt._opt_called = True  # type: ignore[union-attr]
            return func.__get__(opt, opt.__class__)(*args, **kwargs)

        wrapper._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
        optimizer.step = wrapper  # type: ignore[method-assign]
    optimizer._opt_called = getattr(old, "_opt_called", False)  # type: ignore[attr-defined]

"""Structured L1-norm filter pruning (Li et al. 2017, as used by Istrate et al. section IV.B) over conv groups.

Pruning is widening run backwards over the same channel groups: each prunable group (a hidden, unlocked
group produced by convolutions only) keeps the channels whose producer filters have the largest L1 norm
(summed over all producers of the group, e.g. both convs feeding a residual add), and every tensor of the
group keeps the same indices. Per group, ``round(ratio * width)`` channels go (at least one stays), so
pruned conv filters / all conv filters of those groups is ``ratio`` within one filter per group.
"""

from __future__ import annotations

import logging
import numbers
from typing import Any

import torch
from torch import nn

from netgrow.errors import LockedGroupError, NetgrowTypeError, NetgrowValueError, VerificationError
from netgrow.graph.groups import ChannelGraph, ChannelGroup, analyse
from netgrow.ops.param_map import set_param_map
from netgrow.ops.rules import producer_weight
from netgrow.ops.replay import example_input as zeros_input
from netgrow.graph.trace import eval_mode
from netgrow.ops.widen import GroupMap, check_model_and_input, dtype_name, group_for_name, locked_reasons, resize_groups
from netgrow.spec import append_record

log = logging.getLogger(__name__)

CRITERIA = ("l1",)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _conv_produced(model: nn.Module, group: ChannelGroup) -> bool:
    return all(isinstance(model.get_submodule(p), _CONVS) for p in group.producers)


def prunable_groups(graph: ChannelGraph, model: nn.Module) -> list[ChannelGroup]:
    """Hidden, unlocked groups whose producers are all convolutions and with no LayerNorm/GroupNorm."""
    return [g for g in graph.groups if g.resizable and not g.uniform and _conv_produced(model, g)]


def filter_scores(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """L1 norm of each output channel's filter, summed over the group's producers (float64, on CPU)."""
    score = torch.zeros(group.width, dtype=torch.float64)
    for name in group.producers:
        w, dim = producer_weight(model.get_submodule(name))
        score += w.detach().movedim(dim, 0).abs().flatten(1).sum(1).double().cpu()
    return score


def _keep_map(kept: torch.Tensor, width: int) -> GroupMap:
    return GroupMap(kept.to(torch.int64), torch.ones(width, dtype=torch.float64))


def _conv_filters(model: nn.Module, graph: ChannelGraph) -> int:
    return sum(
        graph.groups[u.produces].width
        for n, u in graph.modules.items()
        if u.produces is not None and isinstance(model.get_submodule(n), _CONVS)
    )


def _shrink(model: nn.Module, graph: ChannelGraph, maps: dict[int, GroupMap], record: dict[str, Any]) -> nn.Module:
    new, pm = resize_groups(model, graph, maps)
    append_record(new, record)
    set_param_map(new, pm)
    return new


def prune(
    model: nn.Module, ratio: float, example_input: torch.Tensor, criterion: str = "l1", verify_runs: bool = True
) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of the filters of every prunable conv group removed.

    ``ratio`` in [0, 1). The output layer is never pruned; locked groups and groups under LayerNorm or
    GroupNorm are left alone, and when that leaves no conv group to prune, ``LockedGroupError`` lists why. With ``verify_runs`` the result is run on ``example_input`` (eval mode) and
    must give an output of the same shape. The record holds the new width of every pruned group.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
        >>> small = prune(net, 0.5, torch.randn(2, 3, 6, 6))
        >>> small[0].out_channels, small[3].in_features
        (4, 64)
    """
    check_model_and_input(model, example_input, "prune")
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise NetgrowTypeError(f"prune: ratio must be a number in [0, 1), got {ratio!r} ({type(ratio).__name__})")
    if not 0.0 <= float(ratio) < 1.0:
        raise NetgrowValueError(
            f"prune: ratio {ratio!r} is outside [0, 1); it is the fraction of conv filters to remove, e.g. 0.3"
        )
    if criterion not in CRITERIA:
        raise NetgrowValueError(f"prune: unknown criterion {criterion!r}; use one of {CRITERIA}")

    graph = analyse(model, example_input)
    prunable = prunable_groups(graph, model)
    conv_groups = [g for g in graph.groups if g.producers and not g.is_output and _conv_produced(model, g)]
    if not prunable and conv_groups:
        raise LockedGroupError(
            f"prune: nothing in {type(model).__name__} can be pruned, every hidden conv channel group is locked "
            f"or normalised: {locked_reasons(conv_groups)}. Change the model so these reasons go away"
        )
    maps: dict[int, GroupMap] = {}
    widths: dict[str, int] = {}
    pruned = 0
    for g in prunable:
        keep = max(1, g.width - round(float(ratio) * g.width))
        if keep == g.width:
            continue
        kept = torch.topk(filter_scores(model, g), keep).indices.sort().values  # keep the original order
        maps[g.id] = _keep_map(kept, g.width)
        widths[g.name] = keep
        pruned += (g.width - keep) * sum(isinstance(model.get_submodule(p), _CONVS) for p in g.producers)
    total = _conv_filters(model, graph)
    record = {
        "op": "prune",
        "ratio": float(ratio),
        "criterion": criterion,
        "widths": widths,
        "pruned_filters": pruned,
        "conv_filters": total,
        "input_shape": list(example_input.shape),
        "input_dtype": dtype_name(example_input),
    }
    new = _shrink(model, graph, maps, record)
    if verify_runs:
        _check_runs(model, new, example_input)
    log.info("prune: removed %d of %d conv filters (ratio %.3f)", pruned, total, pruned / max(total, 1))
    return new


def _check_runs(old: nn.Module, new: nn.Module, x: torch.Tensor) -> None:
    with eval_mode(old, new), torch.no_grad():
        a, b = old(x), new(x)
    if getattr(a, "shape", None) != getattr(b, "shape", None) or not torch.isfinite(b).all():
        raise VerificationError(
            f"prune: the pruned model's output has shape {tuple(getattr(b, 'shape', ()))} (finite: "
            f"{bool(torch.isfinite(b).all())}) instead of {tuple(getattr(a, 'shape', ()))}; please report this model",
            module=None,
        )


def replay(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """Rebuild the shapes of a recorded prune: every named group shrinks to its recorded width."""
    x = zeros_input(record)
    check_model_and_input(model, x, "prune replay")
    graph = analyse(model, x)
    maps: dict[int, GroupMap] = {}
    for name, width in record["widths"].items():
        g = group_for_name(graph, model, name, "prune replay")
        if not 1 <= int(width) <= g.width:
            raise NetgrowValueError(
                f"prune replay: recorded width {width} for {name!r} does not fit its width {g.width}"
            )
        maps[g.id] = _keep_map(torch.arange(int(width)), g.width)
    return _shrink(model, graph, maps, dict(record))

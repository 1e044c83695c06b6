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
from netgrow.ops.verify import first_output
from netgrow.graph.example_input import check_example_input
from netgrow.ops.widen import GroupMap, dtype_name, group_for_name, locked_reasons, resize_groups
from netgrow.spec import append_record

log = logging.getLogger(__name__)

CRITERIA = ("l1",)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _conv_produced(model: nn.Module, group: ChannelGroup) -> bool:
    return all(isinstance(model.get_submodule(p), _CONVS) for p in group.producers)


LAYERS = ("conv", "linear")


def prunable_groups(graph: ChannelGraph, model: nn.Module, layers: str = "conv") -> list[ChannelGroup]:
    """Hidden, unlocked groups with no LayerNorm/GroupNorm over them, produced by convolutions only
    (``layers="conv"``) or by linear-type layers only (``"linear"``: FFN units, and attention heads as whole
    units, a key/value head with the query heads sharing it under GQA)."""
    return [
        g for g in graph.groups
        if g.resizable and not g.uniform and _conv_produced(model, g) == (layers == "conv")
    ]  # fmt: skip


def filter_scores(model: nn.Module, group: ChannelGroup, graph: ChannelGraph | None = None) -> torch.Tensor:
    """L1 norm of each unit's incoming weights (a conv filter; a head's q/k/v rows), summed over the group's
    producers (float64, on CPU)."""
    score = torch.zeros(group.width, dtype=torch.float64)
    for name in group.producers:
        w, out_dim = producer_weight(model.get_submodule(name))
        rows = w.detach().movedim(out_dim, 0).abs().flatten(1).sum(1).double().cpu()
        use = graph.modules.get(name) if graph is not None else None
        if use is None or use.out_layout is None:
            score += rows
            continue
        offset = 0
        for seg in use.out_layout:  # a fused q/k/v projection holds the group three times; heads span block rows
            n = graph.groups[seg.group].width * seg.block
            if seg.group == group.id:
                score += rows[offset : offset + n].view(group.width, seg.block).sum(1)
            offset += n
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
    model: nn.Module,
    ratio: float,
    example_input: torch.Tensor,
    criterion: str = "l1",
    verify_runs: bool = True,
    layers: str = "conv",
) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of the filters of every prunable conv group removed.

    ``ratio`` in [0, 1). The output layer is never pruned; locked groups and groups under LayerNorm or
    GroupNorm are left alone, and when that leaves no conv group to prune, ``LockedGroupError`` lists why. With ``verify_runs`` the result is run on ``example_input`` (eval mode) and
    must give an output of the same shape. The record holds the new width of every pruned group.
    ``layers="linear"`` prunes the groups of linear layers instead of conv filters: FFN units and whole
    attention heads of a transformer (key/value groups kept consistent), by the L1 norm of their incoming
    weights (a head's q, k and v rows together).

    Example::

        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
        >>> small = prune(net, 0.5, torch.randn(2, 3, 6, 6))
        >>> small[0].out_channels, small[3].in_features
        (4, 64)
    """
    check_example_input(model, example_input, "prune")
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise NetgrowTypeError(f"prune: ratio must be a number in [0, 1), got {ratio!r} ({type(ratio).__name__})")
    if not 0.0 <= float(ratio) < 1.0:
        raise NetgrowValueError(
            f"prune: ratio {ratio!r} is outside [0, 1); it is the fraction of conv filters to remove, e.g. 0.3"
        )
    if criterion not in CRITERIA:
        raise NetgrowValueError(f"prune: unknown criterion {criterion!r}; use one of {CRITERIA}")
    if layers not in LAYERS:
        raise NetgrowValueError(f"prune: layers={layers!r} is unknown; use one of {LAYERS}")

    graph = analyse(model, example_input)
    prunable = prunable_groups(graph, model, layers)
    candidates = [
        g for g in graph.groups if g.producers and not g.is_output and _conv_produced(model, g) == (layers == "conv")
    ]  # fmt: skip
    if layers == "conv" and not candidates and prunable_groups(graph, model, "linear"):
        log.warning("prune: %s has no conv filters to prune; layers='linear' prunes its linear units "
                    "(FFN units, attention heads)", type(model).__name__)  # fmt: skip
    if not prunable and candidates:
        raise LockedGroupError(
            f"prune: nothing in {type(model).__name__} can be pruned, every hidden {layers} channel group is locked "
            f"or normalised: {locked_reasons(candidates)}. Change the model so these reasons go away"
        )
    maps: dict[int, GroupMap] = {}
    widths: dict[str, int] = {}
    pruned = 0
    convs = layers == "conv"
    for g in prunable:
        keep = max(1, g.width - round(float(ratio) * g.width))
        if keep == g.width:
            continue
        kept = torch.topk(filter_scores(model, g, graph), keep).indices.sort().values  # keep the original order
        maps[g.id] = _keep_map(kept, g.width)
        widths[g.name] = keep
        pruned += (g.width - keep) * len(g.producers)  # prunable groups are produced by `layers` layers only
    total = _conv_filters(model, graph) if convs else sum(g.width * len(g.producers) for g in prunable)
    record = {
        "op": "prune",
        "ratio": float(ratio),
        "criterion": criterion,
        "widths": widths,
        "pruned_filters": pruned,
        "conv_filters": total,
        "layers": layers,
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
        a, b = first_output(old(x)), first_output(new(x))
    if getattr(a, "shape", None) != getattr(b, "shape", None) or not torch.isfinite(b).all():
        raise VerificationError(
            f"prune: the pruned model's output has shape {tuple(getattr(b, 'shape', ()))} (finite: "
            f"{bool(torch.isfinite(b).all())}) instead of {tuple(getattr(a, 'shape', ()))}; please report this model",
            module=None,
        )


def replay(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """Rebuild the shapes of a recorded prune: every named group shrinks to its recorded width."""
    x = zeros_input(record)
    check_example_input(model, x, "prune replay")
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

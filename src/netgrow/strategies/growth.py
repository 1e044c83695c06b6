"""Growth steps shared by the strategies, each recorded in a :class:`~netgrow.strategies.base.Growth` chain.

- :func:`grow_depth`: Net2DeeperNet to a deeper family member (``netgrow.models.grow``: vgg11 -> vgg16 ...);
- :func:`grow_width`: Net2WiderNet (or the random-pad baseline) to a larger width multiplier;
- :func:`zero_masks`: the zero-mask option of the cumulative paper (Table 2): the exact zeros of the layers a
  growth step inserted are held at zero while training.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from netgrow.strategies.base import Growth

if TYPE_CHECKING:
    from netgrow.strategies.base import Experiment

log = logging.getLogger(__name__)


def grow_depth(exp: "Experiment", growth: Growth, arch: str, data_index: int) -> nn.Module:
    """Deepen ``growth.model`` to the family member ``arch`` (identity layers; BatchNorm statistics set from
    a few batches of subset ``data_index``)."""
    # not `netgrow.models.grow`: once the submodule is imported that attribute is the module itself
    from netgrow.models.grow import grow

    model = growth.model
    x = exp.example_for(model)
    return growth.apply(f"grow:{arch}", grow, arch, x, data=exp.batches(data_index, model))


def _out_dim(m: nn.Module) -> int | None:
    if isinstance(m, nn.modules.conv._ConvNd):
        return int(m.out_channels)
    if isinstance(m, nn.Linear):
        return int(m.out_features)
    return None


def target_widths(model: nn.Module, reference: nn.Module) -> dict[str, int]:
    """Producer name -> width for every conv/linear of ``model`` narrower than the same-named module of
    ``reference`` (a fresh model of the target width); the output layer is never included."""
    from netgrow import models

    out_name = models.output_layer(model)
    ref = dict(reference.named_modules())
    widths: dict[str, int] = {}
    for name, m in model.named_modules():
        if name == out_name or name not in ref:
            continue
        cur, tgt = _out_dim(m), _out_dim(ref[name])
        if cur is not None and tgt is not None and tgt > cur:
            widths[name] = tgt
    return widths


def grow_width(exp: "Experiment", growth: Growth, arch: str, width_from: float, width_to: float, *,
               classes: int, noise: float, seed: int, method: str = "net2net", pruned: bool = False) -> nn.Module:
    """Widen ``growth.model`` from width multiplier ``width_from`` to ``width_to``.

    An unpruned model is widened layer by layer to exactly the widths of a fresh ``arch`` at ``width_to``
    (so the result is a plain family member); a pruned one by the factor ``width_to / width_from``.
    """
    from netgrow import ops

    model = growth.model
    x = exp.example_for(model)
    if pruned:
        widths: float | dict[str, int] = width_to / width_from
    else:
        widths = target_widths(model, exp.create(arch, classes, width_to))
        if not widths:
            return model
    verify = method == "net2net" and noise == 0.0
    return growth.apply(f"widen:{width_to:g}:{method}", ops.widen, widths, x, noise=noise, seed=seed,
                        method=method, verify=verify)


def inserted_weights(model: nn.Module, pm: Any) -> set[str]:
    """Names of the weight tensors (2-D or more) that a growth chain created fresh (no source in ``pm``),
    excluding the output layer (its new rows are random, not identity)."""
    from netgrow import models

    if pm is None:
        return set()
    out_prefix = models.output_layer(model) + "."
    return {n for n, p in model.named_parameters()
            if p.dim() >= 2 and not n.startswith(out_prefix) and (n not in pm or pm[n].source is None)}


def carried_names(pm: Any, old_names: set[str]) -> set[str]:
    """New names of the tensors in ``old_names`` after a growth chain with map ``pm``."""
    if pm is None:
        return set(old_names)
    return {n for n, src in pm.items() if src.source is not None and src.source in old_names}


def zero_masks(model: nn.Module, names: set[str], surround_only: bool = False) -> dict[str, torch.Tensor]:
    """``{name: weight == 0}`` for the tracked weights (True = entry held at zero during training).

    ``surround_only`` (the narrower reading of the paper's "fix the zero values in the expanded kernels"):
    the centre tap of every conv kernel is never masked, so only the surround of the identity kernels (and
    the surround of the all-zero off-diagonal kernels) is held at zero."""
    params = dict(model.named_parameters())
    out = {}
    for n in sorted(names):
        if n not in params:
            continue
        mask = params[n].detach() == 0
        if surround_only and mask.dim() >= 3:
            centre = tuple(s // 2 for s in mask.shape[2:])
            mask[(slice(None), slice(None), *centre)] = False
        out[n] = mask
    return out

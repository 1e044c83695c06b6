"""Ablation robustness (Morcos et al. 2018, used in Feng & Panda IV.C; Fig. 4c).

A *unit* is one output channel of a convolution. Ablating it clamps its activation to zero. When a
convolution is directly followed by a BatchNorm over the same channels (the next module in
``named_modules()`` order, as in netgrow's VGG/ResNet families), the channel is zeroed at the
BatchNorm's output: zeroing the conv output alone would leave the BatchNorm's shift ``β − γμ/σ`` and the
unit would not be silent. Otherwise the conv output itself is zeroed.

Ablation is done with forward hooks that are removed afterwards; the model's weights are never
modified, so the user's model comes back exactly as it was.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from netgrow.analysis._common import (
    DEFAULT_BATCH_SIZE,
    sweep_bar,
    Data,
    check_count,
    data_accuracy,
    check_levels,
    eval_mode,
    mean_std,
)
from netgrow.errors import NetgrowValueError

log = logging.getLogger(__name__)

_WHERE = "netgrow.analysis.ablation_robustness"

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def ablation_targets(model: nn.Module) -> list[tuple[str, int]]:
    """``[(module_name, channels)]``: where each conv unit is zeroed (the conv, or its BatchNorm).

    Example::

        >>> from torch import nn
        >>> m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> ablation_targets(m)
        [('1', 4), ('3', 2)]
    """
    mods = list(model.named_modules())
    targets: list[tuple[str, int]] = []
    for i, (name, mod) in enumerate(mods):
        if not isinstance(mod, nn.modules.conv._ConvNd) or mod.transposed:
            continue
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if nxt is not None and isinstance(nxt[1], _BN) and nxt[1].num_features == mod.out_channels:
            targets.append((nxt[0], mod.out_channels))
        else:
            targets.append((name, mod.out_channels))
    return targets


def _units_to_ablate(channels: int, fraction: float) -> int:
    # round half up, so fraction 0.5 of 5 channels ablates 3 (Python's round() would give 2)
    return min(channels, int(math.floor(fraction * channels + 0.5)))


@contextlib.contextmanager
def ablate(model: nn.Module, fraction: float, seed: int = 0) -> Iterator[list[tuple[str, list[int]]]]:
    """Zero ``round(fraction · C)`` random units of every conv layer while the context is open.

    The channels of each layer are a prefix of one seeded random permutation per layer, so for a fixed
    seed the ablated sets are nested across fractions. Yields ``[(module_name, ablated_channels)]``.
    Fraction 0 registers no hook at all (the clean forward pass, bit for bit).
    """
    fraction = check_levels([fraction], "fraction", _WHERE, upper=1.0)[0]
    targets = ablation_targets(model)
    if not targets:
        raise NetgrowValueError(
            f"{_WHERE}: model {type(model).__name__} has no Conv layers; ablation zeroes conv channels "
            "(Morcos et al.), so it needs a convolutional model — skip the ablation study for this model"
        )
    gen = torch.Generator().manual_seed(int(seed))
    handles = []
    chosen: list[tuple[str, list[int]]] = []
    try:
        for name, channels in targets:
            perm = torch.randperm(channels, generator=gen)  # drawn even when k = 0: same stream for every fraction
            k = _units_to_ablate(channels, fraction)
            if k == 0:
                continue
            idx = perm[:k].sort().values
            chosen.append((name, idx.tolist()))
            handles.append(model.get_submodule(name).register_forward_hook(_zero_channels_hook(idx)))
        yield chosen
    finally:
        for h in handles:
            h.remove()


def _zero_channels_hook(idx: torch.Tensor) -> Any:
    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output.index_fill(1, idx.to(output.device), 0.0)

    return hook


def ablation_robustness(
    model: nn.Module,
    data: Data,
    fractions: Sequence[float],
    trials: int = 5,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | str = False,
) -> list[dict[str, Any]]:
    """Accuracy vs the fraction of conv units zeroed, ``trials`` random choices per fraction.

    Returns one row per fraction: ``{"fraction", "mean", "std", "accs"}`` (sample std over trials).
    Trial ``t`` uses seed ``seed + t`` for every fraction (nested ablations along the curve). Fraction 0
    is evaluated once and reproduces the clean accuracy exactly; fraction 1 zeroes every conv unit.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
        >>> x, y = torch.randn(6, 1, 6, 6), torch.randint(0, 3, (6,))
        >>> [r["fraction"] for r in ablation_robustness(m, (x, y), [0.0, 0.5], trials=2)]
        [0.0, 0.5]
    """
    levels = check_levels(fractions, "fractions", _WHERE, upper=1.0)
    trials = check_count(trials, "trials", _WHERE)
    if not ablation_targets(model):
        raise NetgrowValueError(
            f"{_WHERE}: model {type(model).__name__} has no Conv layers; ablation zeroes conv channels "
            "(Morcos et al.), so it needs a convolutional model — skip the ablation study for this model"
        )
    rows: list[dict[str, Any]] = []
    bar = sweep_bar(sum(1 if f == 0 else trials for f in levels), "ablation", progress)
    with eval_mode(model):
        for fraction in levels:
            accs = []
            for t in range(1 if fraction == 0 else trials):
                with ablate(model, fraction, seed=seed + t):
                    accs.append(data_accuracy(model, data, batch_size, _WHERE))
                bar.update(1)
            if fraction == 0:
                accs = accs * trials
            mean, std = mean_std(accs)
            rows.append({"fraction": fraction, "mean": mean, "std": std, "accs": accs})
            log.debug("ablation fraction=%g: %.4f ± %.4f", fraction, mean, std)
    bar.close()
    return rows

"""Noise robustness (Feng & Panda, IV.C; Fig. 4a): accuracy under Gaussian noise on the inputs.

Noise is added to the *normalised* inputs the model sees, so σ is measured in units of the per-channel
standard deviation of the training data (σ = 1 is noise as large as the data's own spread). No
clipping is applied after adding noise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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

log = logging.getLogger(__name__)

_WHERE = "netgrow.analysis.noise_robustness"


@torch.no_grad()
def noisy_accuracy(model: nn.Module, data: Data, sigma: float, seed: int = 0,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> float:
    """Accuracy of ``model`` on ``data`` with ``N(0, sigma²)`` noise added to every input.

    The noise is drawn on the CPU from ``torch.Generator().manual_seed(seed)``, batch after batch, so
    the same seed gives the same noise on every device, and a given seed uses the same standard-normal
    draw ``z`` for every σ (inputs are ``x + σ·z``): curves over σ are smooth, not jittered by resampling.
    ``sigma == 0`` adds nothing, so it reproduces the clean accuracy exactly.
    """
    sigma = check_levels([sigma], "sigma", _WHERE)[0]
    gen = torch.Generator().manual_seed(int(seed))

    def add_noise(x: torch.Tensor) -> torch.Tensor:
        if sigma == 0:
            return x
        z = torch.randn(x.shape, generator=gen, dtype=torch.float32)
        return x + sigma * z.to(device=x.device, dtype=x.dtype)

    with eval_mode(model):
        return data_accuracy(model, data, batch_size, _WHERE, perturb=add_noise)


def noise_robustness(
    model: nn.Module,
    data: Data,
    sigmas: Sequence[float],
    draws: int = 5,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | str = False,
) -> list[dict[str, Any]]:
    """Accuracy vs the standard deviation σ of Gaussian noise on the normalised inputs.

    For each σ, ``draws`` independent noise draws (seeds ``seed, seed+1, …``); returns one row per σ:
    ``{"sigma", "mean", "std", "accs"}`` with the sample standard deviation over draws (0 for one draw).
    σ = 0 is evaluated once (there is nothing random) and reproduces the clean accuracy exactly.
    The model is put in eval mode for the sweep and its training flags are restored afterwards.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 2)
        >>> x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
        >>> rows = noise_robustness(model, (x, y), sigmas=[0.0, 1.0], draws=2)
        >>> [r["sigma"] for r in rows], rows[0]["std"]
        ([0.0, 1.0], 0.0)
    """
    levels = check_levels(sigmas, "sigmas", _WHERE)
    draws = check_count(draws, "draws", _WHERE)
    rows: list[dict[str, Any]] = []
    bar = sweep_bar(sum(1 if s == 0 else draws for s in levels), "noise", progress)
    for sigma in levels:
        accs = []
        for d in range(1 if sigma == 0 else draws):
            accs.append(noisy_accuracy(model, data, sigma, seed=seed + d, batch_size=batch_size))
            bar.update(1)
        if sigma == 0:
            accs = accs * draws
        mean, std = mean_std(accs)
        rows.append({"sigma": sigma, "mean": mean, "std": std, "accs": accs})
        log.debug("noise sigma=%g: %.4f ± %.4f", sigma, mean, std)
    bar.close()
    return rows

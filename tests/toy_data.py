"""A tiny separable classification set shared by the trainer-level tests and their subprocess scripts."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset


def blobs(n: int, seed: int, shift: float = 2.0) -> TensorDataset:
    """``n`` samples of 6 features in 3 classes: class ``y`` has its feature ``y`` shifted by ``shift``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g)
    x[torch.arange(n), y] += shift
    return TensorDataset(x, y)

"""scikit-learn's handwritten digits (1,797 grey 8×8 images, values 0..16), split with a seed.

The data ship inside scikit-learn, so nothing is downloaded. Pixels are stored as float32 on the
0..16 scale (they are not bytes); normalisation uses the train split's mean/std.

Example::

    >>> from netgrow.data.digits import load_digits
    >>> train, test = load_digits()
    >>> len(train) + len(test), train.input_shape, train.num_classes
    (1797, (1, 8, 8), 10)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from netgrow.data.base import InMemoryDataset, channel_stats
from netgrow.errors import NetgrowValueError

log = logging.getLogger(__name__)

__all__ = ["load_digits"]


def load_digits(root: Any = None, test_fraction: float = 0.2, seed: int = 0) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Digits as ``(train, test)`` with a seeded stratified split (``root`` is ignored)."""
    from sklearn.datasets import load_digits as sk_load_digits

    if not 0.0 < test_fraction < 1.0:
        raise NetgrowValueError(f"netgrow.data.load_digits: test_fraction={test_fraction}; use a value in (0, 1)")
    bunch = sk_load_digits()
    x = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1)
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    train_idx: list[int] = []
    test_idx: list[int] = []
    for c in range(10):  # stratified: every class in both splits, in the same proportion
        members = torch.nonzero(y == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        n_test = int(np.floor(test_fraction * len(members) + 0.5))
        test_idx += members[:n_test].tolist()
        train_idx += members[n_test:].tolist()
    tr, te = torch.tensor(sorted(train_idx)), torch.tensor(sorted(test_idx))
    classes = [str(d) for d in range(10)]
    mean, std = channel_stats(x[tr])
    train = InMemoryDataset(x[tr], y[tr], classes, name="digits", mean=mean, std=std)
    test = InMemoryDataset(x[te], y[te], classes, name="digits", mean=mean, std=std)
    return train, test

"""MNIST-1D, generated offline with the ``mnist1d`` package (never its download path).

``mnist1d.data.get_dataset`` downloads a pickle by default; netgrow calls only the generator,
``mnist1d.data.make_dataset``, with the package's default arguments (``seed`` overridable, the URL
dropped). The generator seeds numpy's and Python's *global* RNGs, so their states are saved and
restored around the call: loading MNIST-1D does not disturb anyone else's random stream.

Samples are float32 signals of shape (1, 40); 4,000 train / 1,000 test with the defaults.

Example::

    >>> from netgrow.data.mnist1d import load_mnist1d
    >>> train, test = load_mnist1d()
    >>> len(train), len(test), train.input_shape, train.num_classes
    (4000, 1000, (1, 40), 10)
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

from netgrow.data.base import InMemoryDataset, channel_stats
from netgrow.errors import DataError, NetgrowValueError

log = logging.getLogger(__name__)

__all__ = ["load_mnist1d"]


def load_mnist1d(
    root: Any = None, seed: int = 42, num_samples: int = 5000, train_split: float = 0.8, **overrides: Any
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Generate MNIST-1D (``root`` is ignored: nothing is read or downloaded).

    ``seed`` (default 42, the package's), ``num_samples``, ``train_split`` and any other key of
    ``mnist1d.data.get_dataset_args()`` (e.g. ``shuffle_seq=True``) may be overridden.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise DataError("netgrow.data: MNIST-1D needs the mnist1d package: `pip install mnist1d`") from e
    if num_samples < 20 or not 0.0 < train_split < 1.0:
        raise NetgrowValueError(
            f"netgrow.data.load_mnist1d: num_samples={num_samples}, train_split={train_split}; "
            "use num_samples >= 20 and train_split in (0, 1)"
        )
    args = get_dataset_args(as_dict=True)
    unknown = set(overrides) - set(args)
    if unknown:
        raise NetgrowValueError(
            f"netgrow.data.load_mnist1d: unknown option(s) {sorted(unknown)}; known: {sorted(args)}"
        )
    args.update(overrides, seed=int(seed), num_samples=int(num_samples), train_split=float(train_split))
    args.pop("url", None)  # make_dataset never uses it; dropping it documents that nothing is fetched
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(_Args(args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x_tr = torch.from_numpy(np.ascontiguousarray(data["x"], dtype=np.float32)).unsqueeze(1)
    x_te = torch.from_numpy(np.ascontiguousarray(data["x_test"], dtype=np.float32)).unsqueeze(1)
    y_tr = torch.from_numpy(np.asarray(data["y"], dtype=np.int64))
    y_te = torch.from_numpy(np.asarray(data["y_test"], dtype=np.int64))
    classes = [str(d) for d in range(10)]
    mean, std = channel_stats(x_tr)
    log.info("generated MNIST-1D: %d train, %d test (seed %d)", len(y_tr), len(y_te), seed)
    train = InMemoryDataset(x_tr, y_tr, classes, name="mnist1d", mean=mean, std=std)
    test = InMemoryDataset(x_te, y_te, classes, name="mnist1d", mean=mean, std=std)
    return train, test


class _Args:
    """Attribute view of the argument dict, as ``make_dataset`` expects."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)

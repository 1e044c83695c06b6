"""CIFAR-10 and CIFAR-100 from the standard python-pickle batch directories.

Layouts (as extracted from ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``)::

    cifar-10-batches-py/  data_batch_1 … data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta

``root`` may be that directory or its parent; without ``root``, ``$NETGROW_DATA_ROOT`` is searched.
The pickles are read with an unpickler that only accepts numpy arrays, lists, dicts, strings and
numbers, so a tampered file cannot run code.

Example::

    >>> from netgrow.data.cifar import load_cifar10
    >>> train, test = load_cifar10("/data")     # doctest: +SKIP
    >>> train.input_shape, train.num_classes    # doctest: +SKIP
    ((3, 32, 32), 10)
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netgrow.data.base import InMemoryDataset, channel_stats
from netgrow.data.locate import DATA_ROOT_ENV, candidate_dirs, describe
from netgrow.errors import DataError, NetgrowValueError

log = logging.getLogger(__name__)

__all__ = ["load_cifar10", "load_cifar100", "read_pickle"]

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

# The only globals a CIFAR pickle needs: numpy's array reconstruction (under numpy 1 and 2 module
# names) and the codec py2 pickles use for byte strings.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data set pickle")


def read_pickle(path: Path) -> dict[str, Any]:
    """Load a CIFAR-style pickle (py2 or py3) with string keys; :class:`DataError` if unreadable."""
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(f"netgrow.data: cannot read {path}: {e}") from e
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ... from a damaged file
        raise DataError(
            f"netgrow.data: {path} is not a readable CIFAR pickle ({type(e).__name__}: {e}); "
            f"re-extract the archive from {_CIFAR_URL}"
        ) from e
    if not isinstance(obj, dict):
        raise DataError(f"netgrow.data: {path} holds a {type(obj).__name__}, expected a dict of arrays")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _names(meta: dict[str, Any], key: str, path: Path) -> list[str]:
    if key not in meta:
        raise DataError(f"netgrow.data: {path} has no '{key}' entry (keys: {sorted(meta)})")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[key]]


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = read_pickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(f"netgrow.data: {path} has no '{key}' entry (keys: {sorted(d)})")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"netgrow.data: {path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)"
        )
    if data.shape[0] != labels.shape[0]:
        raise DataError(f"netgrow.data: {path}: {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"netgrow.data: {path}: labels in [{labels.min()}, {labels.max()}], expected [0, {num_classes})"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _find_dir(root: str | os.PathLike | None, subdir: str, marker: str, name: str) -> Path:
    dirs = candidate_dirs(root, subdirs=(subdir,))
    for d in dirs:
        if (d / marker).is_file():
            return d
    raise DataError(
        f"netgrow.data: {name} not found: no {subdir}/{marker} in {describe(dirs)}. "
        f"Get the python version from {_CIFAR_URL}, extract it under a directory DIR, "
        f"then pass root=DIR or set {DATA_ROOT_ENV}=DIR"
    )


def _build(
    name: str, parts: list[tuple[np.ndarray, np.ndarray]], test: tuple[np.ndarray, np.ndarray], classes: list[str]
) -> tuple[InMemoryDataset, InMemoryDataset]:
    x_tr = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    y_tr = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    mean, std = channel_stats(x_tr)
    train = InMemoryDataset(x_tr, y_tr, classes, name=name, mean=mean, std=std)
    x_te, y_te = torch.from_numpy(test[0].copy()), torch.from_numpy(test[1])
    test_ds = InMemoryDataset(x_te, y_te, classes, name=name, mean=mean, std=std)
    return train, test_ds


def load_cifar10(root: str | os.PathLike | None = None) -> tuple[InMemoryDataset, InMemoryDataset]:
    """CIFAR-10: 50,000 / 10,000 colour 32×32 images, 10 classes, as ``uint8`` N×3×32×32."""
    d = _find_dir(root, "cifar-10-batches-py", "batches.meta", "CIFAR-10")
    classes = _names(read_pickle(d / "batches.meta"), "label_names", d / "batches.meta")
    if len(classes) != 10:
        raise DataError(f"netgrow.data: {d / 'batches.meta'} lists {len(classes)} label names, expected 10")
    files = [d / f"data_batch_{i}" for i in range(1, 6)] + [d / "test_batch"]
    for f in files:
        if not f.is_file():
            raise DataError(
                f"netgrow.data: CIFAR-10 file {f} is missing; re-extract cifar-10-python.tar.gz from {_CIFAR_URL}"
            )
    log.info("loading CIFAR-10 from %s", d)
    parts = [_read_batch(f, "labels", 10) for f in files[:5]]
    return _build("cifar10", parts, _read_batch(files[5], "labels", 10), classes)


def load_cifar100(
    root: str | os.PathLike | None = None, label: str = "fine"
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """CIFAR-100: 50,000 / 10,000 colour 32×32 images; ``label="fine"`` (100) or ``"coarse"`` (20)."""
    if label not in ("fine", "coarse"):
        raise NetgrowValueError(f"netgrow.data.load_cifar100: label={label!r}; use 'fine' or 'coarse'")
    d = _find_dir(root, "cifar-100-python", "meta", "CIFAR-100")
    classes = _names(read_pickle(d / "meta"), f"{label}_label_names", d / "meta")
    for f in (d / "train", d / "test"):
        if not f.is_file():
            raise DataError(
                f"netgrow.data: CIFAR-100 file {f} is missing; re-extract cifar-100-python.tar.gz from {_CIFAR_URL}"
            )
    log.info("loading CIFAR-100 (%s labels) from %s", label, d)
    key = f"{label}_labels"
    name = "cifar100" if label == "fine" else "cifar100_coarse"
    train = _read_batch(d / "train", key, len(classes))
    return _build(name, [train], _read_batch(d / "test", key, len(classes)), classes)

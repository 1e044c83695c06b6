"""``load(name, root=None, **kwargs)`` and ``list_datasets()``: one entry point for every data set.

Example::

    >>> from netgrow.data import load, list_datasets
    >>> "fashion_mnist" in list_datasets()
    True
    >>> train, test = load("digits")
    >>> train.num_classes, train.input_shape
    (10, (1, 8, 8))
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from netgrow.errors import NetgrowValueError

log = logging.getLogger(__name__)

__all__ = ["load", "list_datasets", "register_dataset"]

Loader = Callable[..., tuple[Dataset, Dataset]]

# name -> "module:function", imported on first use so `import netgrow.data` stays light
_REGISTRY: dict[str, str | Loader] = {
    "fashion_mnist": "netgrow.data.idx:load_fashion_mnist",
    "mnist": "netgrow.data.idx:load_mnist",
    "cifar10": "netgrow.data.cifar:load_cifar10",
    "cifar100": "netgrow.data.cifar:load_cifar100",
    "tinyimagenet": "netgrow.data.tinyimagenet:load_tinyimagenet",
    "imagefolder": "netgrow.data.imagefolder:load_imagefolder",
    "mnist1d": "netgrow.data.mnist1d:load_mnist1d",
    "digits": "netgrow.data.digits:load_digits",
    "fortunes": "netgrow.data.text:load_fortunes",
    "text": "netgrow.data.text:load_text",
}

_ALIASES = {
    "fashionmnist": "fashion_mnist",
    "fmnist": "fashion_mnist",
    "cifar_10": "cifar10",
    "cifar_100": "cifar100",
    "tiny_imagenet": "tinyimagenet",
    "tinyimagenet200": "tinyimagenet",
    "tiny_imagenet_200": "tinyimagenet",
    "image_folder": "imagefolder",
    "mnist_1d": "mnist1d",
}


def register_dataset(name: str, loader: Loader) -> None:
    """Add a loader ``loader(root=None, **kwargs) -> (train, test)`` under ``name``."""
    _REGISTRY[name] = loader


def list_datasets() -> list[str]:
    """Names accepted by :func:`load`, sorted."""
    return sorted(_REGISTRY)


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def load(name: str, root: str | os.PathLike | None = None, **kwargs: Any) -> tuple[Dataset, Dataset]:
    """Load data set ``name`` as ``(train, test)``; ``root`` and ``kwargs`` go to its loader.

    Never downloads: file-based sets are found via ``root`` or environment variables (see each
    loader), generated ones (``mnist1d``, ``digits``) ignore ``root``.
    """
    if not isinstance(name, str):
        raise NetgrowValueError(f"netgrow.data.load: name={name!r}; use one of {list_datasets()}")
    key = _canonical(name)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise NetgrowValueError(f"netgrow.data.load: unknown data set {name!r}{hint}; use one of {list_datasets()}")
    entry = _REGISTRY[key]
    if isinstance(entry, str):
        import importlib

        module, func = entry.split(":")
        entry = getattr(importlib.import_module(module), func)
    return entry(root=root, **kwargs)

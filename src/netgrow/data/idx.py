"""MNIST and Fashion-MNIST from IDX files (gzip-compressed or raw).

Fashion-MNIST is looked for in ``root``, else ``$NETGROW_FASHION_MNIST``, else
``$NETGROW_DATA_ROOT/fashion-mnist``, else ``/usr/share/datasets/fashion-mnist`` (the Debian package
``dataset-fashion-mnist``). MNIST likewise with ``$NETGROW_MNIST`` and ``$NETGROW_DATA_ROOT/mnist``.
A directory in torchvision's layout (``FashionMNIST/raw``, ``MNIST/raw``) also works.

Example::

    >>> from netgrow.data.idx import load_fashion_mnist
    >>> train, test = load_fashion_mnist()          # doctest: +SKIP
    >>> len(train), len(test), train.input_shape    # doctest: +SKIP
    (60000, 10000, (1, 28, 28))
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from netgrow.data.base import InMemoryDataset, channel_stats
from netgrow.data.locate import DATA_ROOT_ENV, candidate_dirs, describe, find_first
from netgrow.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["read_idx", "load_idx_split", "load_fashion_mnist", "load_mnist", "FASHION_MNIST_CLASSES"]

FASHION_MNIST_ENV = "NETGROW_FASHION_MNIST"
MNIST_ENV = "NETGROW_MNIST"
FASHION_MNIST_DEFAULT = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(d) for d in range(10)]

# IDX type codes (third magic byte) -> big-endian numpy dtype
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"netgrow.data: cannot read {path}: {e}") from e
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(
                f"netgrow.data: {path} is a corrupt or truncated gzip file ({e}); "
                "re-install or re-copy the data set"
            ) from e
    return raw


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a native-endian numpy array.

    ``ndim`` checks the number of dimensions in the magic number (3 for images, 1 for labels).
    Raises :class:`DataError` naming the file for a bad magic number or a size that does not
    match the header (truncated or trailing bytes).
    """
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise DataError(f"netgrow.data: {path} is truncated: {len(buf)} bytes, an IDX header needs at least 4")
    zero0, zero1, code, nd = buf[0], buf[1], buf[2], buf[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES:
        raise DataError(
            f"netgrow.data: {path} has a bad magic number 0x{buf[:4].hex()}; expected an IDX file "
            "(0x0000 then a type code such as 08 and the number of dimensions)"
        )
    if ndim is not None and nd != ndim:
        raise DataError(
            f"netgrow.data: {path} has a bad magic number 0x{buf[:4].hex()}: {nd} dimensions, expected {ndim}"
        )
    header = 4 + 4 * nd
    if len(buf) < header:
        raise DataError(f"netgrow.data: {path} is truncated inside its header ({len(buf)} bytes)")
    dims = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd)]
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        kind = "truncated" if len(buf) < expected else "longer than its header says"
        raise DataError(
            f"netgrow.data: {path} is {kind}: {len(buf)} bytes, header {dims} implies {expected}; "
            "re-install or re-copy the data set"
        )
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def load_idx_split(images: Path, labels: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an (images, labels) IDX pair: ``uint8`` N×1×H×W and ``int64`` N, validated."""
    x = read_idx(images, ndim=3)
    y = read_idx(labels, ndim=1)
    if x.dtype != np.uint8:
        raise DataError(f"netgrow.data: {images} holds {x.dtype} pixels, expected unsigned bytes (type code 0x08)")
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"netgrow.data: {images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels"
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(
            f"netgrow.data: {labels} has labels in [{int(y.min())}, {int(y.max())}], expected [0, {num_classes})"
        )
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def _idx_names(stem: str) -> list[str]:
    # "train-images-idx3-ubyte": also the "train-images.idx3-ubyte" spelling, each raw or gzipped
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def _load_mnist_like(
    name: str,
    root: str | os.PathLike | None,
    env_var: str,
    subdirs: tuple[str, ...],
    defaults: tuple[str, ...],
    classes: list[str],
    fix: str,
) -> tuple[InMemoryDataset, InMemoryDataset]:
    dirs = candidate_dirs(root, env_vars=(env_var,), subdirs=subdirs, defaults=defaults)
    files = {}
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for stem in stems:
        found = find_first(dirs, _idx_names(stem))
        if found is None:
            raise DataError(
                f"netgrow.data: {name} file {stem}[.gz] not found in {describe(dirs)}; {fix}"
            )
        files[stem] = found
    log.info("loading %s from %s", name, files["train-images-idx3-ubyte"].parent)
    x_tr, y_tr = load_idx_split(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"], len(classes))
    x_te, y_te = load_idx_split(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"], len(classes))
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(
            f"netgrow.data: {name}: train images are {tuple(x_tr.shape[2:])} but test images {tuple(x_te.shape[2:])}"
        )
    mean, std = channel_stats(x_tr)
    train = InMemoryDataset(x_tr, y_tr, classes, name=name, mean=mean, std=std)
    test = InMemoryDataset(x_te, y_te, classes, name=name, mean=mean, std=std)
    return train, test


def load_fashion_mnist(root: str | os.PathLike | None = None) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Fashion-MNIST (60,000 / 10,000 grey 28×28 images, 10 classes) from IDX files.

    ``root`` (or ``$NETGROW_FASHION_MNIST``) is the directory holding the four IDX files.
    """
    return _load_mnist_like(
        "fashion_mnist",
        root,
        FASHION_MNIST_ENV,
        subdirs=("fashion-mnist", "FashionMNIST/raw"),
        defaults=(FASHION_MNIST_DEFAULT,),
        classes=FASHION_MNIST_CLASSES,
        fix=(
            "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass "
            f"root=DIR / set {FASHION_MNIST_ENV}=DIR to a directory holding the IDX files"
        ),
    )


def load_mnist(root: str | os.PathLike | None = None) -> tuple[InMemoryDataset, InMemoryDataset]:
    """MNIST (60,000 / 10,000 grey 28×28 digits) from IDX files in ``root`` or ``$NETGROW_MNIST``."""
    return _load_mnist_like(
        "mnist",
        root,
        MNIST_ENV,
        subdirs=("mnist", "MNIST/raw"),
        defaults=(),
        classes=MNIST_CLASSES,
        fix=(
            f"pass root=DIR or set {MNIST_ENV}=DIR (or {DATA_ROOT_ENV}=DIR with a mnist/ sub-directory) "
            "to a directory holding the four MNIST IDX files"
        ),
    )

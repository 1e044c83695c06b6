"""Fashion-MNIST end to end from the Debian package dataset-fashion-mnist (or $NETGROW_FASHION_MNIST)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from netgrow.data import load, make_loader, nested_subsets

_DIR = Path(os.environ.get("NETGROW_FASHION_MNIST") or "/usr/share/datasets/fashion-mnist")
_HAVE = any((_DIR / f"train-images-idx3-ubyte{ext}").is_file() for ext in ("", ".gz"))

pytestmark = [
    pytest.mark.fashion,
    pytest.mark.skipif(
        not _HAVE,
        reason=f"Fashion-MNIST IDX files not in {_DIR}: `apt-get install dataset-fashion-mnist` "
        "or set NETGROW_FASHION_MNIST",
    ),
]


@pytest.fixture(scope="module")
def fashion():
    return load("fashion_mnist")


def test_counts_classes_shape_and_pixel_range(fashion):
    train, test = fashion
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.num_classes == test.num_classes == 10 and train.classes[9] == "Ankle boot"
    assert train.input_shape == test.input_shape == (1, 28, 28)
    assert train.data.dtype == torch.uint8
    assert int(train.data.min()) == 0 and int(train.data.max()) == 255
    assert torch.bincount(train.targets).tolist() == [6000] * 10
    assert torch.bincount(test.targets).tolist() == [1000] * 10
    # the published statistics of Fashion-MNIST's train split
    assert train.mean[0] == pytest.approx(0.2860, abs=1e-4)
    assert train.std[0] == pytest.approx(0.3530, abs=1e-4)


def test_normalised_train_has_zero_mean_unit_std(fashion):
    train, test = fashion
    x, y = train.tensors()
    assert x.dtype == torch.float32 and tuple(x.shape) == (60_000, 1, 28, 28)
    assert x.double().mean().item() == pytest.approx(0.0, abs=1e-4)
    assert x.double().std().item() == pytest.approx(1.0, abs=1e-3)
    xt, _ = test.tensors()
    assert abs(xt.double().mean().item()) < 0.05  # test split uses the train statistics


def test_nested_subsets_and_loader_on_fashion(fashion):
    train, test = fashion
    tr = nested_subsets(train, [0.5, 1.0], seed=0)
    te = nested_subsets(test, [0.5, 1.0], seed=0)
    assert [len(s) for s in tr] == [30_000, 60_000] and [len(s) for s in te] == [5_000, 10_000]
    assert tr[0].classes == te[0].classes
    loader = make_loader(tr[0], 1024, seed=0, augment="crop_flip")
    x, y = next(iter(loader))
    assert tuple(x.shape) == (1024, 1, 28, 28) and int(y.max()) < 5
    assert len(loader) == 30

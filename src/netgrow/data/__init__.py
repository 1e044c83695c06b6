"""netgrow.data: offline data sets, nested class subsets and fast seeded loaders.

::

    from netgrow.data import load, nested_subsets, make_loader
    train, test = load("fashion_mnist")                       # Debian dataset-fashion-mnist
    stages = nested_subsets(train, [5, 7, 10], seed=0)        # D1 ⊂ D2 ⊂ D3, labels stable
    tests = nested_subsets(test, [5, 7, 10], seed=0)          # same class order
    loader = make_loader(stages[0], 128, seed=0, augment="crop_flip")
    for x, y in loader: ...

Nothing here downloads anything or imports torchvision.
"""

from netgrow.data.base import InMemoryDataset, channel_stats
from netgrow.data.loader import DatasetLoader, TensorLoader, epoch_order, make_loader
from netgrow.data.registry import list_datasets, load, register_dataset
from netgrow.data.split import split, split_indices
from netgrow.data.subsets import ClassSubset, class_order, nested_subsets
from netgrow.data.transforms import CropFlip

__all__ = [
    "InMemoryDataset",
    "channel_stats",
    "load",
    "list_datasets",
    "register_dataset",
    "nested_subsets",
    "split",
    "split_indices",
    "class_order",
    "ClassSubset",
    "TensorLoader",
    "DatasetLoader",
    "make_loader",
    "epoch_order",
    "CropFlip",
]

"""Nested class-incremental subsets D1 ⊂ D2 ⊂ … for cumulative training (CIFAR50 → 70 → 100).

A seeded class order is drawn once; stage i holds *every* sample of the first K_i classes of that
order (cumulative, not disjoint). Labels are remapped so that ``order[k]`` becomes label ``k``:
a class keeps its label index in every later stage and new classes are appended at the end, so
growing the classifier only appends output units (``expand_classes``).

Example::

    >>> import torch
    >>> from netgrow.data.base import InMemoryDataset
    >>> from netgrow.data.subsets import nested_subsets
    >>> ds = InMemoryDataset(torch.zeros(10, 1, 2, 2), torch.arange(10) % 5, [str(c) for c in range(5)], "toy")
    >>> d1, d2 = nested_subsets(ds, [2, 5], seed=0)
    >>> d1.num_classes, d2.num_classes, len(d1), len(d2)
    (2, 5, 4, 10)
    >>> d2.class_order[:2] == d1.class_order
    True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from netgrow.errors import DataError, NetgrowTypeError, NetgrowValueError

log = logging.getLogger(__name__)

__all__ = ["nested_subsets", "class_order", "resolve_schedule", "ClassSubset"]


def resolve_schedule(schedule: Sequence[int | float], num_classes: int) -> list[int]:
    """Turn a schedule of class counts (ints) or fractions (floats in (0, 1]) into counts K_i.

    A fraction f gives K = floor(f·C + 0.5) (so 0.5 of 100 classes is 50). The result must be
    strictly increasing, each K in [1, num_classes].
    """
    if isinstance(schedule, (str, bytes)) or not isinstance(schedule, Sequence) or len(schedule) == 0:
        raise NetgrowValueError(
            f"netgrow.data.nested_subsets: schedule={schedule!r}; give a non-empty list of class counts "
            "like [5, 7, 10] or of fractions like [0.5, 0.7, 1.0]"
        )
    is_int = [isinstance(s, int) and not isinstance(s, bool) for s in schedule]
    is_float = [isinstance(s, float) for s in schedule]
    if not (all(is_int) or all(is_float)):
        raise NetgrowValueError(
            f"netgrow.data.nested_subsets: schedule={list(schedule)!r} mixes counts and fractions or has "
            "non-numbers; use only ints (class counts) or only floats in (0, 1] (fractions)"
        )
    if all(is_float):
        bad = [f for f in schedule if not 0.0 < f <= 1.0]
        if bad:
            raise NetgrowValueError(
                f"netgrow.data.nested_subsets: fractions {bad} are outside (0, 1]; for class counts use ints"
            )
        counts = [int(math.floor(f * num_classes + 0.5)) for f in schedule]
    else:
        counts = [int(s) for s in schedule]
    for given, k in zip(schedule, counts):
        if k < 1 or k > num_classes:
            raise NetgrowValueError(
                f"netgrow.data.nested_subsets: schedule entry {given!r} gives {k} classes; each stage needs "
                f"between 1 and {num_classes} (the data set's num_classes)"
            )
    if any(b <= a for a, b in zip(counts, counts[1:])):
        raise NetgrowValueError(
            f"netgrow.data.nested_subsets: schedule {list(schedule)!r} -> class counts {counts} must be "
            "strictly increasing (each stage adds classes)"
        )
    return counts


def class_order(num_classes: int, seed: int = 0, shuffle: bool = True) -> list[int]:
    """The seeded class order: a ``torch.randperm`` of the classes (identity if ``shuffle=False``).

    ``seed=0`` is a seed like any other: it gives a permutation, not the identity order.
    """
    if not shuffle:
        return list(range(num_classes))
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(num_classes, generator=gen).tolist()


class ClassSubset(Dataset):
    """A lazy view of ``parent`` restricted to ``indices``, labels mapped through ``label_map``.

    Used for data sets without a ``select`` method (any map-style Dataset with ``targets``).
    """

    def __init__(
        self, parent: Dataset, indices: torch.Tensor, label_map: torch.Tensor, classes: list[str],
        class_order: list[int], name: str,
    ) -> None:
        self.parent = parent
        self.indices = indices
        self.label_map = label_map
        self.targets = label_map[torch.as_tensor(parent.targets, dtype=torch.int64)[indices]]
        self.classes = classes
        self.class_order = class_order
        self.name = name
        for attr in ("mean", "std", "input_shape"):
            if hasattr(parent, attr):
                setattr(self, attr, getattr(parent, attr))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        x, y = self.parent[int(self.indices[index])]
        return x, int(self.label_map[int(y)])


def nested_subsets(
    dataset: Dataset, schedule: Sequence[int | float], seed: int = 0, shuffle_classes: bool = True
) -> list[Dataset]:
    """Nested class subsets D1 ⊂ D2 ⊂ … of ``dataset`` following ``schedule``.

    ``schedule``: class counts (``[5, 7, 10]``) or fractions (``[0.5, 0.7, 1.0]``). The class order
    is ``class_order(num_classes, seed, shuffle_classes)``; the same seed on the train and the test
    set gives the same order (and so the same labels). ``shuffle_classes=False`` takes classes
    0, 1, 2, … in their original order (the paper's "first 50 classes").

    Each subset has ``num_classes == K_i``, labels in [0, K_i), ``classes`` (names in the new
    order), ``targets``, ``class_order`` (original label of each new label) and ``indices``
    (positions in ``dataset``, ascending, so the sample order of the parent is kept). Data sets
    with a ``select`` method (in-memory and file-backed netgrow data sets) give subsets of the
    same kind; any other Dataset with ``targets`` gives a lazy :class:`ClassSubset`.
    """
    if not hasattr(dataset, "targets"):
        raise NetgrowTypeError(
            f"netgrow.data.nested_subsets: {type(dataset).__name__} has no 'targets'; use a netgrow data set "
            "or any Dataset with an int 'targets' tensor and 'num_classes'"
        )
    targets = torch.as_tensor(dataset.targets, dtype=torch.int64)
    num_classes = int(getattr(dataset, "num_classes", int(targets.max()) + 1 if len(targets) else 0))
    if num_classes < 1:
        raise DataError("netgrow.data.nested_subsets: the data set has no classes")
    counts = resolve_schedule(schedule, num_classes)
    names = list(getattr(dataset, "classes", [str(c) for c in range(num_classes)]))
    order = class_order(num_classes, seed, shuffle_classes)
    # compose with an earlier remapping so class_order always names the original labels
    base_order = list(getattr(dataset, "class_order", range(num_classes)))
    rank = torch.empty(num_classes, dtype=torch.int64)
    rank[torch.tensor(order)] = torch.arange(num_classes)
    base_name = getattr(dataset, "name", type(dataset).__name__)
    stages: list[Dataset] = []
    for k in counts:
        keep = rank[targets] < k
        indices = torch.nonzero(keep).flatten()
        label_map = torch.where(rank < k, rank, torch.full_like(rank, -1))
        stage_classes = [names[c] for c in order[:k]]
        stage_order = [base_order[c] for c in order[:k]]
        name = f"{base_name}[{k}/{num_classes}]"
        if hasattr(dataset, "select"):
            sub = dataset.select(
                indices, label_map=label_map, classes=stage_classes, name=name, class_order=stage_order
            )
        else:
            sub = ClassSubset(dataset, indices, label_map, stage_classes, stage_order, name)
        sub.indices = indices
        stages.append(sub)
        log.debug("stage with %d classes: %d samples", k, len(indices))
    return stages

"""A seeded, stratified validation hold-out carved from a training set.

Every decision of a run (stopping rules, plateaus, the angle criterion, mutual-inference weights and
no-decision thresholds) reads the validation split; the test set is only reported. With
``stratify=True`` each class gives ``round(fraction * n_class)`` samples (at least one when the class has
two or more), so the class proportions of both parts match the parent's.

Example::

    >>> import torch
    >>> from netgrow.data import InMemoryDataset, split
    >>> ds = InMemoryDataset(torch.zeros(120, 1, 4, 4), torch.arange(120) % 4, ["a", "b", "c", "d"], "toy")
    >>> train, val = split(ds, 0.1, seed=0)
    >>> len(train), len(val), torch.bincount(val.targets).tolist()
    (108, 12, [3, 3, 3, 3])
"""

from __future__ import annotations

from typing import Any

import torch

from netgrow.errors import ConfigError, NetgrowTypeError


def split_indices(targets: torch.Tensor, fraction: float, seed: int = 0, stratify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train_indices, val_indices)``, both ascending and disjoint, covering ``range(len(targets))``."""
    if not 0.0 < float(fraction) < 1.0:
        raise ConfigError(f"netgrow.data.split: fraction={fraction!r} is invalid; use a number in (0, 1), e.g. 0.1")
    targets = torch.as_tensor(targets, dtype=torch.int64)
    n = int(targets.numel())
    gen = torch.Generator().manual_seed(int(seed))
    if stratify:
        picked = []
        for c in torch.unique(targets).tolist():
            members = torch.nonzero(targets == c).flatten()
            k = int(round(fraction * members.numel()))
            if members.numel() >= 2:
                k = min(max(k, 1), members.numel() - 1)
            picked.append(members[torch.randperm(members.numel(), generator=gen)[:k]])
        val = torch.cat(picked) if picked else torch.zeros(0, dtype=torch.int64)
    else:
        val = torch.randperm(n, generator=gen)[: int(round(fraction * n))]
    val = val.sort().values
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[val] = True
    if int(is_val.sum()) in (0, n):
        raise ConfigError(
            f"netgrow.data.split: fraction={fraction} of {n} samples leaves one part empty; "
            "use a larger data set or a fraction nearer 0.5"
        )
    return torch.nonzero(~is_val).flatten(), val


def split(dataset: Any, fraction: float, seed: int = 0, stratify: bool = True) -> tuple[Any, Any]:
    """``(train, val)``: a seeded hold-out of ``fraction`` of ``dataset`` (stratified by class by default).

    ``dataset`` needs ``targets`` (netgrow data sets, or any map-style Dataset with an int ``targets``);
    the parent is not modified. Data sets with a ``select`` method give the same kind back; others a lazy
    :class:`~netgrow.data.subsets.ClassSubset` view.
    """
    if not hasattr(dataset, "targets"):
        raise NetgrowTypeError(
            f"netgrow.data.split: {type(dataset).__name__} has no 'targets'; use a netgrow data set or any "
            "Dataset with an int 'targets' tensor"
        )
    train_idx, val_idx = split_indices(dataset.targets, fraction, seed, stratify)
    name = getattr(dataset, "name", type(dataset).__name__)
    return _take(dataset, train_idx, f"{name}[train]"), _take(dataset, val_idx, f"{name}[val]")


def _take(dataset: Any, indices: torch.Tensor, name: str) -> Any:
    if hasattr(dataset, "select"):
        return dataset.select(indices, name=name)
    from netgrow.data.subsets import ClassSubset

    targets = torch.as_tensor(dataset.targets, dtype=torch.int64)
    k = int(getattr(dataset, "num_classes", int(targets.max()) + 1 if len(targets) else 0))
    classes = list(getattr(dataset, "classes", [str(c) for c in range(k)]))
    order = list(getattr(dataset, "class_order", range(k)))
    return ClassSubset(dataset, indices, torch.arange(k), classes, order, name)

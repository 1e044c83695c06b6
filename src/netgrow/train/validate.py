"""Checks run before a stage trains, so bad input fails in a second with a clear message, not mid-run.

Empty data sets, a global batch larger than the training set (or not divisible by the number of DDP
ranks), labels outside the model's output size, masks or budgets that do not fit: each raises a
``DataError`` / ``ConfigError`` / ``NetgrowValueError`` naming the stage, the value and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from netgrow.errors import ConfigError, DataError, NetgrowTypeError, NetgrowValueError
from netgrow.ops.verify import eval_mode


def check_datasets(where: str, train_set: Dataset, test_set: Dataset | None, batch_size: int, world_size: int) -> None:
    """Non-empty data sets and a global batch that fits the training set and splits evenly over ranks."""
    for label, ds in (("training", train_set), ("test", test_set)):
        if ds is None:
            continue
        try:
            n = len(ds)  # type: ignore[arg-type]
        except TypeError:
            raise NetgrowTypeError(f"{where}: the {label} set must be a sized Dataset (len() and [i]), got {type(ds).__name__}") from None
        if n == 0:
            raise DataError(f"{where}: the {label} set is empty; pass a data set with at least one sample")
    if batch_size > len(train_set):  # type: ignore[arg-type]
        raise ConfigError(
            f"{where}: batch_size={batch_size} is larger than the training set ({len(train_set)} samples); "  # type: ignore[arg-type]
            f"use batch_size <= {len(train_set)}"  # type: ignore[arg-type]
        )
    if batch_size % world_size:
        raise ConfigError(
            f"{where}: batch_size={batch_size} (the global batch) does not split evenly over {world_size} "
            f"DDP ranks; use a multiple of {world_size}"
        )


def example_input(where: str, train_set: Dataset, device: torch.device) -> torch.Tensor:
    """A batch of one training sample on ``device`` (used to probe the model and count MACs)."""
    item = train_set[0]
    if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], torch.Tensor)):
        raise NetgrowTypeError(f"{where}: train_set[0] must be an (x tensor, label) pair, got {type(item).__name__}")
    return item[0].unsqueeze(0).to(device)


def output_size(where: str, model: nn.Module, example: torch.Tensor) -> int:
    """The number of classes the model predicts (last dim of its output on ``example``).

    Logits ``(batch, classes)``, or ``(batch, T, vocab)`` for a next-token model (``netgrow.train.lm``).
    """
    try:
        with eval_mode(model), torch.no_grad():
            out = model(example)
    except Exception as exc:
        raise NetgrowValueError(
            f"{where}: the model cannot run on a training sample of shape {tuple(example.shape[1:])} "
            f"({type(exc).__name__}: {exc}); check the model's input channels and size"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.dim() not in (2, 3):
        raise NetgrowTypeError(
            f"{where}: the model must return logits of shape (batch, classes) or (batch, T, vocab), got "
            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
        )
    return int(out.shape[-1])


def _labels(ds: Dataset) -> torch.Tensor:
    targets = getattr(ds, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets).reshape(-1)
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        return ds.tensors[1].reshape(-1)
    return torch.tensor([int(ds[i][1]) for i in range(len(ds))])  # type: ignore[arg-type]


def check_labels(where: str, datasets: dict[str, Dataset | None], num_outputs: int) -> None:
    """Every label lies in ``[0, num_outputs)``."""
    for label, ds in datasets.items():
        if ds is None:
            continue
        y = _labels(ds)
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_outputs:
            raise DataError(
                f"{where}: the {label} set has labels in [{lo}, {hi}] but the model has {num_outputs} outputs; "
                f"labels must lie in [0, {num_outputs}). Expand the output layer first "
                f"(netgrow.expand_classes(model, {hi + 1}, example_input)) or remap the labels"
            )


def check_masks(where: str, model: nn.Module, masks: dict[str, torch.Tensor] | None) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """``(param, bool mask on the param's device)`` pairs; unknown names or wrong shapes raise."""
    if not masks:
        return []
    params = dict(model.named_parameters())
    pairs = []
    for name, mask in masks.items():
        if name not in params:
            close = [n for n in params if name.split(".")[-1] in n][:5] or list(params)[:5]
            raise NetgrowValueError(f"{where}: mask for unknown parameter {name!r}; parameters are e.g. {close}")
        p = params[name]
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != tuple(p.shape):
            raise NetgrowValueError(
                f"{where}: mask for {name!r} has shape {tuple(mask.shape)} but the parameter has {tuple(p.shape)}"
            )
        pairs.append((p, mask.to(device=p.device, dtype=torch.bool)))
    return pairs


def trainable_params(
    where: str, model: nn.Module, trainable: Callable[[str], bool] | None
) -> list[tuple[str, nn.Parameter]]:
    """The named parameters to optimise: ``trainable(name)`` (default: those with ``requires_grad``)."""
    if trainable is None:
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not callable(trainable):
        raise NetgrowTypeError(f"{where}: trainable must be a callable (param_name) -> bool, got {type(trainable).__name__}")
    return [(n, p) for n, p in model.named_parameters() if trainable(n)]


def check_budget(where: str, epochs: Any, steps: Any) -> None:
    """Budgets are positive integers or None."""
    for label, v in (("epochs", epochs), ("steps", steps)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"{where}: {label}={v!r} is invalid; use an integer >= 1 or None")

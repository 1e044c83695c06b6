"""Shared plumbing of the analysis functions: batching, eval mode, validation, accuracy.

``data`` everywhere in :mod:`netgrow.analysis` is either a pair of tensors ``(x, y)`` (normalised
inputs, int64 labels) or any iterable of ``(x, y)`` batches (a ``TensorLoader``/``DataLoader`` with
``shuffle=False``, so repeated passes see the same inputs in the same order).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Union

import torch
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.graph.trace import eval_mode  # noqa: F401 (re-exported to the analysis modules)

log = logging.getLogger(__name__)

Data = Union[tuple[torch.Tensor, torch.Tensor], Iterable[tuple[torch.Tensor, torch.Tensor]]]

DEFAULT_BATCH_SIZE = 512


def sweep_bar(items: int | Iterable[Any], what: str, progress: bool | str) -> Any:
    """The progress bar of one sweep (``items``: a count or the levels to iterate over).

    ``progress``: False (silent), True, or a label naming the model (``"noise (grown, vgg19)"``), so the
    bars of several models can be told apart. Not on a terminal (a log file) there is no bar -- tqdm's
    carriage-return updates would fill the file -- but one log line when the sweep starts.
    """
    from tqdm import std
    from tqdm.auto import tqdm
    from tqdm.autonotebook import tqdm as notebook_tqdm

    desc = f"{what} ({progress})" if isinstance(progress, str) and progress else what
    total = items if isinstance(items, int) else None
    # a terminal, or a notebook (tqdm.auto picked its widget bar, which has no carriage returns)
    tty = bool(getattr(sys.stderr, "isatty", lambda: False)()) or notebook_tqdm is not std.tqdm
    if progress and not tty:
        n = total if total is not None else len(items)  # type: ignore[arg-type]
        log.info("%s: %d evaluation(s)", desc, n)
    kwargs = {"desc": desc, "disable": not progress or not tty, "leave": False, "file": sys.stderr}
    return tqdm(total=total, **kwargs) if total is not None else tqdm(items, **kwargs)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first parameter (CPU/float32 for a parameterless model)."""
    for p in model.parameters():
        return p.device, (p.dtype if p.is_floating_point() else torch.float32)
    return torch.device("cpu"), torch.float32


def iter_batches(data: Data, batch_size: int, where: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of ``data`` (a tensor pair is cut into ``batch_size`` slices)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise NetgrowValueError(f"{where}: batch_size must be a positive int, got {batch_size!r}")
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        check_xy(x, y, where)
        for start in range(0, x.shape[0], batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    if isinstance(data, torch.Tensor) or not isinstance(data, Iterable):
        raise NetgrowTypeError(
            f"{where}: data must be a pair (x, y) of tensors or an iterable of (x, y) batches, "
            f"got {type(data).__name__}"
        )
    for batch in data:
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise NetgrowTypeError(f"{where}: every batch must be an (x, y) pair, got {type(batch).__name__}")
        x, y = batch[0], batch[1]
        check_xy(x, y, where)
        yield x, y


def check_xy(x: Any, y: Any, where: str) -> None:
    """Raise a netgrow error unless ``x`` is a float tensor and ``y`` int labels of the same length."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise NetgrowTypeError(f"{where}: x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if not x.is_floating_point():
        raise NetgrowTypeError(f"{where}: x must be a floating point tensor (normalised inputs), got {x.dtype}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or y.ndim != 1:
        raise NetgrowTypeError(
            f"{where}: y must be a 1-D integer tensor of class indices, got {y.dtype} {tuple(y.shape)}"
        )
    if x.shape[0] != y.shape[0]:
        raise NetgrowValueError(f"{where}: x has {x.shape[0]} samples but y has {y.shape[0]} labels")


def to_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to the model's device (and floating dtype)."""
    device, dtype = model_device_dtype(model)
    return x.to(device=device, dtype=dtype), y.to(device=device, dtype=torch.int64)


def check_labels(y: torch.Tensor, num_outputs: int, where: str) -> None:
    """Labels must index the model's outputs: an early-stage model cannot score a class it never had."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_outputs):
        raise NetgrowValueError(
            f"{where}: labels must lie in [0, {num_outputs}) for a model with {num_outputs} outputs, "
            f"found [{int(y.min())}, {int(y.max())}]; evaluate the model on the classes it was trained on"
        )


@torch.no_grad()
def predict_logits(model: nn.Module, data: Data, batch_size: int = DEFAULT_BATCH_SIZE,
                   where: str = "netgrow.analysis") -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, y)`` of the whole of ``data`` on CPU (float32), the model in eval mode."""
    outs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    with eval_mode(model):
        for x, y in iter_batches(data, batch_size, where):
            x, y = to_model(model, x, y)
            outs.append(model(x).float().cpu())
            ys.append(y.cpu())
    if not outs:
        raise NetgrowValueError(f"{where}: data is empty; pass at least one sample")
    return torch.cat(outs), torch.cat(ys)


def hit_rate(hits: torch.Tensor) -> float:
    """``count / n`` of a boolean tensor, as every accuracy in netgrow.analysis is computed.

    One formula everywhere (integer count over integer total) makes accuracies from different code
    paths bit-identical when they count the same hits.
    """
    n = hits.numel()
    return int(hits.sum()) / n if n else float("nan")


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose argmax equals the label."""
    return hit_rate(logits.argmax(1) == y)


@torch.no_grad()
def data_accuracy(model: nn.Module, data: Data, batch_size: int, where: str,
                  perturb: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Top-1 accuracy of ``model`` over ``data``, each input batch first passed through ``perturb``."""
    correct = 0
    total = 0
    for x, y in iter_batches(data, batch_size, where):
        if perturb is not None:
            x = perturb(x)
        x, y = to_model(model, x, y)
        correct += int((model(x).argmax(1) == y).sum())
        total += int(y.numel())
    if total == 0:
        raise NetgrowValueError(f"{where}: data is empty; pass at least one sample")
    return correct / total


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single or repeated value)."""
    n = len(values)
    if all(v == values[0] for v in values):
        return values[0], 0.0  # exact: repeating one accuracy must not add rounding error (σ = 0 is exact)
    mean = math.fsum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def check_levels(values: Any, name: str, where: str, upper: float | None = None) -> list[float]:
    """Validate a non-empty list of finite levels in [0, upper] (upper=None: no upper bound)."""
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    try:
        levels = [float(v) for v in values]
    except (TypeError, ValueError):
        raise NetgrowTypeError(f"{where}: {name} must be a list of numbers, got {values!r}") from None
    if not levels:
        raise NetgrowValueError(f"{where}: {name} is empty; pass at least one value")
    for v in levels:
        if not math.isfinite(v) or v < 0 or (upper is not None and v > upper):
            rng = f"[0, {upper:g}]" if upper is not None else ">= 0"
            raise NetgrowValueError(f"{where}: every value of {name} must be finite and {rng}, got {v!r} in {levels}")
    return levels


def check_count(value: Any, name: str, where: str) -> int:
    """A positive int (draws, trials)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NetgrowValueError(f"{where}: {name} must be a positive int, got {value!r}")
    return value

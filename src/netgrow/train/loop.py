"""The hot loop: one epoch of training steps, and evaluation on a test set.

Kept lean so the Trainer runs within a few percent of a hand-written loop: metrics are summed on the
device (no ``.item()`` per step), and values are read back only every ``log_every`` steps (progress bar)
or, on the CPU where reading is free, after every step to catch a NaN/inf loss at the exact step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netgrow.train.lm import as_tokens
from netgrow.train.optim import LRSchedule, set_lr


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager[Any]:
    """bf16/fp16 autocast on CUDA; a no-op elsewhere (the Trainer logs that AMP is GPU-only)."""
    if amp is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@dataclass
class EpochSums:
    """Running training-metric sums of the current epoch, on the device."""

    loss: torch.Tensor  # float64 sum of per-sample losses
    correct: torch.Tensor  # int64
    count: int = 0  # samples (host int: known from the batch shape without a sync)
    batches: int = 0  # batches of this epoch done so far (incl. before a resume)

    @classmethod
    def zeros(cls, device: torch.device) -> "EpochSums":
        dtype = torch.float32 if device.type == "mps" else torch.float64
        return cls(torch.zeros((), dtype=dtype, device=device), torch.zeros((), dtype=torch.int64, device=device))

    def as_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "loss": self.loss.detach().clone(),
            "correct": self.correct.detach().clone(),
            "count": torch.tensor(self.count, dtype=torch.int64),
            "batches": torch.tensor(self.batches, dtype=torch.int64),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], device: torch.device) -> "EpochSums":
        z = cls.zeros(device)
        z.loss.copy_(t["loss"])
        z.correct.copy_(t["correct"])
        z.count = int(t["count"])
        z.batches = int(t["batches"])
        return z


@dataclass
class StepContext:
    """Everything one training step needs (built once per stage)."""

    model: nn.Module  # the module that runs forward (DDP- and/or compile-wrapped)
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    criterion: nn.Module
    device: torch.device
    amp: str | None
    scaler: Any | None  # torch.amp.GradScaler for fp16, else None
    channels_last: bool
    masks: list[tuple[nn.Parameter, torch.Tensor]] = field(default_factory=list)
    check_every: int = 1  # steps between NaN/inf checks (each check reads a value back)
    log_every: int = 50
    any_rank: Callable[[bool], bool] | None = None  # DDP: a NaN on one rank stops every rank at the same step


class NonFiniteLoss(Exception):
    """Raised inside the loop; the Trainer turns it into a TrainingError with stage/epoch context.

    Steps are counted from 1 within the stage (as the ``step`` of metrics rows); the loss became
    non-finite at one of the steps ``first_step..last_step`` (a single step on the CPU).
    """

    def __init__(self, first_step: int, last_step: int, value: float):
        super().__init__(f"non-finite loss {value} at step(s) {first_step}..{last_step}")
        self.first_step = first_step
        self.last_step = last_step
        self.value = value


def apply_masks(masks: list[tuple[nn.Parameter, torch.Tensor]]) -> None:
    """Zero the masked entries of every masked parameter (in place, outside autograd)."""
    with torch.no_grad():
        for p, m in masks:
            p.masked_fill_(m, 0)


def train_steps(
    ctx: StepContext,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    sums: EpochSums,
    step: int,
    stop_at: int | None,
    on_log: Callable[[int, EpochSums], None] | None = None,
    on_step: Callable[[int, EpochSums], None] | None = None,
) -> int:
    """Run training steps over ``batches`` until they end or ``step`` reaches ``stop_at``; returns ``step``.

    ``on_log(step, sums)`` is called every ``log_every`` steps; ``on_step(step, sums)`` after every step
    (mid-epoch checkpoints). Raises :class:`NonFiniteLoss` when the loss became NaN/inf.
    """
    model, opt, sched, crit = ctx.model, ctx.optimizer, ctx.schedule, ctx.criterion
    scaler, masks = ctx.scaler, ctx.masks
    lr = None
    checked = step  # last step whose loss is known to be finite
    model.train()
    if stop_at is not None and step >= stop_at:
        return step
    for x, y in batches:
        if ctx.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        new_lr = sched(step)
        if new_lr != lr:
            set_lr(opt, new_lr)
            lr = new_lr
        with autocast(ctx.device, ctx.amp):
            out, y = as_tokens(model(x), y)  # next-token models: every token is a sample
            loss = crit(out, y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        for p, m in masks:
            if p.grad is not None:
                p.grad.masked_fill_(m, 0)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        if masks:
            apply_masks(masks)
        n = y.shape[0]
        # a NaN/inf loss poisons the running sum, so checking the sum covers every step since the last check
        sums.loss += loss.detach().to(sums.loss.dtype) * n
        sums.correct += (out.detach().argmax(1) == y).sum()
        sums.count += n
        sums.batches += 1
        step += 1
        if step % ctx.check_every == 0:
            if _nonfinite(sums, ctx):
                raise NonFiniteLoss(checked + 1, step, float(loss.detach()))
            checked = step
        if on_log is not None and step % ctx.log_every == 0:
            on_log(step, sums)
        if on_step is not None:
            on_step(step, sums)
        if stop_at is not None and step >= stop_at:
            break
    if step > checked and _nonfinite(sums, ctx):
        raise NonFiniteLoss(checked + 1, step, float(sums.loss))
    return step


def _nonfinite(sums: EpochSums, ctx: StepContext) -> bool:
    bad = not math.isfinite(float(sums.loss))
    return ctx.any_rank(bad) if ctx.any_rank is not None else bad


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    num_classes: int,
    device: torch.device,
    amp: str | None = None,
    channels_last: bool = False,
    per_class: bool = False,
    valid: int | None = None,
) -> dict[str, torch.Tensor]:
    """Summed test loss/correct/count (and per-class correct/count) over ``loader``, on the device.

    ``valid``: how many of the loader's samples are real (DDP shards are padded to equal length; the
    padding at the end is skipped). The caller all-reduces the sums over ranks and divides.
    """
    was_training = model.training
    model.eval()
    dtype = torch.float32 if device.type == "mps" else torch.float64
    loss = torch.zeros((), dtype=dtype, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = torch.zeros((), dtype=torch.int64, device=device)
    cls_correct = torch.zeros(num_classes, dtype=torch.int64, device=device) if per_class else None
    cls_count = torch.zeros(num_classes, dtype=torch.int64, device=device) if per_class else None
    seen = 0
    try:
        for x, y in loader:
            if valid is not None:
                keep = min(y.shape[0], valid - seen)
                if keep <= 0:
                    break
                x, y = x[:keep], y[:keep]
            seen += y.shape[0]
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                out, y = as_tokens(model(x), y)
            out = out.float()
            loss += F.cross_entropy(out, y, reduction="sum").to(dtype)
            hit = out.argmax(1) == y
            correct += hit.sum()
            count += y.shape[0]
            if per_class:
                cls_count += torch.bincount(y, minlength=num_classes)[:num_classes]
                cls_correct += torch.bincount(y[hit], minlength=num_classes)[:num_classes]
    finally:
        model.train(was_training)
    out_sums = {"loss": loss, "correct": correct, "count": count}
    if per_class:
        out_sums["cls_correct"] = cls_correct  # type: ignore[assignment]
        out_sums["cls_count"] = cls_count  # type: ignore[assignment]
    return out_sums

"""Optimizers and learning-rate schedules.

The schedule is a pure function of the optimizer step index (``LRSchedule(step) -> lr``), so resuming
needs only the step count, and the learning rate at any step can be checked with plain numbers:

- warm-up: ``lr * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (linear, reaches ``lr``);
- ``constant``: ``lr``;
- ``step``: ``lr * gamma ** (step // step_size_steps)`` (decays counted from the start of the stage);
- ``cosine``: ``min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2`` with ``t = (step - warmup) / (total - warmup)``
  clipped to [0, 1], so the last step of the budget ends near ``min_lr``.

Example::

    >>> sched = LRSchedule(0.1, "cosine", total_steps=100, warmup_steps=10)
    >>> round(sched(0), 4), round(sched(9), 4), round(sched(55), 4), round(sched(100), 4)
    (0.01, 0.1, 0.05, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from netgrow.errors import ConfigError
from netgrow.train.config import OPTIMIZERS, SCHEDULES, TrainConfig


def build_optimizer(
    named_params: Iterable[tuple[str, nn.Parameter]], config: TrainConfig, lr: float | None = None
) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` over ``named_params``.

    Parameters are passed by name, so ``optimizer.state_dict()["param_groups"][0]["param_names"]`` says
    which state belongs to which parameter (used to carry state across growth).
    """
    named = list(named_params)
    if not named:
        raise ConfigError(
            "netgrow.train: no trainable parameters (the `trainable` filter froze every parameter); "
            "let at least one parameter train"
        )
    lr = config.lr if lr is None else float(lr)
    wd = config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(named, lr=lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            named, lr=lr, alpha=config.alpha, eps=config.eps, momentum=config.momentum, weight_decay=wd
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(named, lr=lr, betas=config.betas, eps=config.eps, weight_decay=wd)
    raise ConfigError(f"netgrow.train: unknown optimizer {config.optimizer!r}; allowed values: {list(OPTIMIZERS)}")


class LRSchedule:
    """Learning rate as a pure function of the step index (see the module docstring for the formulas)."""

    def __init__(
        self,
        base_lr: float,
        kind: str,
        total_steps: int,
        warmup_steps: int = 0,
        step_size_steps: int = 1,
        gamma: float = 0.1,
        min_lr: float = 0.0,
    ) -> None:
        if kind not in SCHEDULES:
            raise ConfigError(f"netgrow.train: unknown schedule {kind!r}; allowed values: {list(SCHEDULES)}")
        self.base_lr = float(base_lr)
        self.kind = kind
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.step_size_steps = max(int(step_size_steps), 1)
        self.gamma = float(gamma)
        self.min_lr = float(min_lr)

    @classmethod
    def from_config(
        cls, config: TrainConfig, steps_per_epoch: int, total_steps: int, lr: float | None = None
    ) -> "LRSchedule":
        """The schedule of one stage: ``total_steps`` optimizer steps, epochs of ``steps_per_epoch`` steps."""
        return cls(
            config.lr if lr is None else lr,
            config.schedule,
            total_steps=total_steps,
            warmup_steps=round(config.warmup_epochs * steps_per_epoch),
            step_size_steps=config.step_size * steps_per_epoch,
            gamma=config.gamma,
            min_lr=min(config.min_lr, config.lr if lr is None else lr),
        )

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.base_lr
        if self.kind == "step":
            return self.base_lr * self.gamma ** (step // self.step_size_steps)
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min(max((step - self.warmup_steps) / span, 0.0), 1.0)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))

    def describe(self) -> dict[str, float | int | str]:
        """The schedule's parameters (JSON), recorded in checkpoints."""
        return {
            "base_lr": self.base_lr,
            "kind": self.kind,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "step_size_steps": self.step_size_steps,
            "gamma": self.gamma,
            "min_lr": self.min_lr,
        }


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr

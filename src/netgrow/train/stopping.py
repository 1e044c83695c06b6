"""Stopping rules: callables ``(history) -> bool`` asked after every epoch's evaluation.

``history`` is the list of the stage's epoch rows so far (dicts with ``"epoch"``, ``"val_acc"``,
``"test_acc"``, ``"train_loss"``, ...). Rules read validation metrics (``val_*``) by default: the test set
is only reported. A rule is a pure function of the history, so a resumed stage stops exactly where
an uninterrupted one would. Strategies add their own rules (e.g. the incremental paper's angle
criterion) with the same signature.

Example::

    >>> rule = Plateau(patience=2)
    >>> rule([{"val_acc": 0.5}, {"val_acc": 0.6}, {"val_acc": 0.6}])
    False
    >>> rule([{"val_acc": 0.5}, {"val_acc": 0.6}, {"val_acc": 0.6}, {"val_acc": 0.59}])
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netgrow.errors import ConfigError
from netgrow.train.schedules import plateaued

StoppingRule = Callable[[list[dict[str, Any]]], bool]


class Plateau:
    """Fires when ``key`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``mode="max"`` for accuracies, ``"min"`` for losses. Epoch rows without the key are ignored.
    """

    def __init__(self, patience: int, min_delta: float = 0.0, key: str = "val_acc", mode: str = "max") -> None:
        if not isinstance(patience, int) or patience < 1:
            raise ConfigError(f"netgrow.train.Plateau: patience={patience!r} is invalid; use an integer >= 1")
        if mode not in ("max", "min"):
            raise ConfigError(f"netgrow.train.Plateau: unknown mode {mode!r}; allowed values: ['max', 'min']")
        if min_delta < 0:
            raise ConfigError(f"netgrow.train.Plateau: min_delta={min_delta!r} is invalid; use a number >= 0")
        self.patience = patience
        self.min_delta = min_delta
        self.key = key
        self.mode = mode

    def __call__(self, history: list[dict[str, Any]]) -> bool:
        sign = 1.0 if self.mode == "max" else -1.0
        return plateaued([sign * row[self.key] for row in history if row.get(self.key) is not None],
                         self.patience, self.min_delta)

    def __repr__(self) -> str:
        return f"Plateau(patience={self.patience}, min_delta={self.min_delta}, key={self.key!r}, mode={self.mode!r})"


def any_of(*rules: StoppingRule | None) -> StoppingRule | None:
    """A rule that fires when any of ``rules`` fires (``None`` entries skipped; ``None`` if none left)."""
    active = [r for r in rules if r is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]

    def rule(history: list[dict[str, Any]]) -> bool:
        return any(r(history) for r in active)

    return rule

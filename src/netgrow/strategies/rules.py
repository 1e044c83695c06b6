"""Stopping rules a strategy hands to ``Trainer.run_stage(stopping=...)``: ``rule(history) -> bool``.

``history`` is the list of the stage's epoch rows (``{"epoch": ..., "val_acc": ..., "test_acc": ...}``,
accuracies as fractions in [0, 1]); a rule reads the validation metrics only (the test set is reported,
never decided on) and returns True to end the stage after that epoch. The epoch budget always
applies as well. ``plateau`` is the "trained to convergence / accuracy saturation" rule of the cumulative
paper (Eq. 1 counts iterations until saturation), applied identically to grown and scratch runs;
``angle`` is the incremental paper's criterion (``netgrow.strategies.angle``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netgrow.errors import NetgrowValueError
from netgrow.strategies.angle import AngleStopping
from netgrow.train.stopping import Plateau

StoppingRule = Callable[[Sequence[Mapping[str, Any]]], bool]
RULES = ("budget", "plateau", "angle")


@dataclass
class MinEpochs:
    """Wrap ``rule`` so it cannot fire before ``min_epochs`` epochs of the stage."""

    rule: StoppingRule
    min_epochs: int

    def __call__(self, history: Sequence[Mapping[str, Any]]) -> bool:
        return len(history) >= self.min_epochs and bool(self.rule(history))


def make_rule(rule: str, *, patience: int = 3, min_delta: float = 0.0, ws: int = 3, gamma: float = 0.5,
              min_epochs: int = 0, key: str = "val_acc") -> StoppingRule | None:
    """The stopping rule named ``rule``: ``"budget"`` (None: epochs only), ``"plateau"`` or ``"angle"``.

    >>> make_rule("budget") is None
    True
    >>> make_rule("plateau", patience=1)([{"val_acc": 0.5}, {"val_acc": 0.5}])
    True
    """
    if rule == "budget":
        return None
    if rule == "plateau":
        out: StoppingRule = Plateau(patience=patience, min_delta=min_delta, key=key)
    elif rule == "angle":
        out = AngleStopping(ws=ws, gamma=gamma, key=key)
    else:
        raise NetgrowValueError(f"netgrow.strategies: unknown stopping rule {rule!r}; allowed: {', '.join(RULES)}")
    return MinEpochs(out, min_epochs) if min_epochs > 0 else out

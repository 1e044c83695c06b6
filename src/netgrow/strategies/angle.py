"""The incremental paper's growth criterion (Istrate et al., section 3 and Fig. 2).

Every ``ws`` epochs a least-squares line is fitted to the last ``ws`` validation accuracies; ``alpha_i``
is the angle between that line and the x-axis (epochs on x, accuracy in percent on y, so a gain of
1 pp per epoch is 45 degrees). Growth (or, used as a stopping rule, the end of a stage) is triggered
when ``alpha_i <= gamma * alpha_{i-1}``: the learning curve has flattened to a fraction ``gamma`` of the
previous window's slope. A window that does not improve at all (``alpha_i <= 0``) also triggers, so a
falling curve never keeps a stage alive; that case is not spelled out in the paper.

Windows do not overlap: with ``ws = 3`` the angles are taken at epochs 3, 6, 9, ... of a stage and the
criterion can first fire at epoch 6.

Example::

    >>> from netgrow.strategies.angle import AngleStopping, window_angle
    >>> round(window_angle([0.50, 0.51, 0.52]), 3)   # 1 pp per epoch
    45.0
    >>> rule = AngleStopping(ws=3, gamma=0.5)
    >>> rule([{"val_acc": a} for a in (0.50, 0.60, 0.70, 0.71, 0.71, 0.71)])
    True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netgrow.errors import NetgrowValueError

log = logging.getLogger(__name__)


def window_angle(accuracies: Sequence[float], scale: float = 100.0) -> float:
    """Angle in degrees between the least-squares line through ``accuracies`` (one per epoch) and the x-axis.

    ``scale`` converts the accuracies to the y unit of the fit: 100 for fractions in [0, 1] (the
    Trainer's convention) so that the angle is that of a percent-vs-epoch plot; 1 for percentages.
    """
    n = len(accuracies)
    if n < 2:
        raise NetgrowValueError(f"window_angle: need at least 2 accuracies to fit a line, got {n}")
    xs = range(n)
    x_mean = (n - 1) / 2.0
    y = [float(a) * scale for a in accuracies]
    y_mean = sum(y) / n
    sxx = sum((x - x_mean) ** 2 for x in xs)
    sxy = sum((x - x_mean) * (yi - y_mean) for x, yi in zip(xs, y))
    return math.degrees(math.atan(sxy / sxx))


def window_angles(accuracies: Sequence[float], ws: int, scale: float = 100.0) -> list[float]:
    """The angles of the complete non-overlapping windows of ``ws`` epochs, in order."""
    _check_ws(ws)
    return [window_angle(accuracies[i : i + ws], scale) for i in range(0, len(accuracies) - ws + 1, ws)]


def should_grow(accuracies: Sequence[float], ws: int, gamma: float, scale: float = 100.0) -> bool:
    """True when the last complete window's angle is ``<= gamma`` times the one before it (or ``<= 0``).

    Evaluated only at window ends (``len(accuracies)`` a multiple of ``ws``); False elsewhere and
    before two windows exist.
    """
    _check_ws(ws)
    if not 0.0 <= gamma <= 1.0:
        raise NetgrowValueError(f"angle criterion: gamma must be in [0, 1], got {gamma}")
    n = len(accuracies)
    if n < 2 * ws or n % ws != 0:
        return False
    prev = window_angle(accuracies[n - 2 * ws : n - ws], scale)
    last = window_angle(accuracies[n - ws :], scale)
    return last <= 0.0 or last <= gamma * prev


def _check_ws(ws: int) -> None:
    if not isinstance(ws, int) or isinstance(ws, bool) or ws < 2:
        raise NetgrowValueError(f"angle criterion: window size ws must be an integer >= 2, got {ws!r}")


@dataclass
class AngleStopping:
    """A Trainer stopping rule: ``rule(history) -> bool`` with the angle criterion on ``history[key]``.

    ``history`` is the stage's list of epoch rows (dicts with ``key``, default ``"val_acc"``: the paper
    decides on a validation split, never on the test set).
    ``min_epochs`` delays the first possible stop. ``angles`` records every window angle seen (for logs
    and reports).
    """

    ws: int = 3
    gamma: float = 0.5
    key: str = "val_acc"
    scale: float = 100.0
    min_epochs: int = 0
    angles: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_ws(self.ws)
        if not 0.0 <= self.gamma <= 1.0:
            raise NetgrowValueError(f"AngleStopping: gamma must be in [0, 1], got {self.gamma}")

    def __call__(self, history: Sequence[Mapping[str, Any]]) -> bool:
        accs = [float(row[self.key]) for row in history if row.get(self.key) is not None]
        self.angles = window_angles(accs, self.ws, self.scale) if len(accs) >= self.ws else []
        fire = len(accs) >= self.min_epochs and should_grow(accs, self.ws, self.gamma, self.scale)
        if fire:
            log.info("angle criterion fired after %d epochs (window angles %s)", len(accs),
                     [round(a, 2) for a in self.angles])
        return fire

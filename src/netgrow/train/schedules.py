"""Learning-rate schedules that stop at saturation: warmup-stable-decay and reduce-on-plateau.

Unlike :class:`~netgrow.train.optim.LRSchedule` these do not need the stage length in advance: they
read the validation history after every epoch (``observe``), and their state (when the decay began,
when the rate was reduced) is a pure function of that history, so a resumed stage replays the history
and continues exactly where an uninterrupted one would (``replay``).

- :class:`WarmupStableDecay` (``schedule = "wsd"``): linear warm-up to ``lr``, then ``lr`` until the
  validation accuracy plateaus (``patience`` epochs without a gain above ``min_delta``) or until only
  ``decay_steps`` of the budget are left, then a linear decay to ``min_lr`` over ``decay_steps``, then
  stop. ``decay=False`` (a stage before the last one of a cross-stage schedule) never decays: the stage
  stops at the plateau, and the next stage continues at the stable rate.
- :class:`ReduceOnPlateau` (``schedule = "plateau"``): ``lr * gamma ** r`` after ``r`` plateaus; stop at
  the plateau that would be reduction number ``max_reductions + 1``.

Example (steps are optimizer steps; the decay starts at the end of the epoch whose row fired)::

    >>> s = WarmupStableDecay(0.1, total_steps=100, warmup_steps=0, decay_steps=10, patience=2)
    >>> for step, acc in [(10, .5), (20, .6), (30, .6), (40, .6)]:
    ...     _ = s.observe([*s.seen, {"step": step, "val_acc": acc}])
    >>> s.decay_start, round(s(39), 3), round(s(40), 3), round(s(49), 3), s.finished(50)
    (40, 0.1, 0.09, 0.0, True)
"""

from __future__ import annotations

from typing import Any

from netgrow.errors import ConfigError


def plateaued(values: list[float], patience: int, min_delta: float, since: int = 0) -> bool:
    """The last ``patience`` values (all at index >= ``since``) gained at most ``min_delta`` over the best
    value before them."""
    if len(values) <= patience or len(values) - patience < since:
        return False
    return max(values[-patience:]) <= max(values[:-patience]) + min_delta


class _HistorySchedule:
    """Shared plumbing: warm-up, the validation key and the history replay."""

    kind = "?"

    def __init__(self, base_lr: float, warmup_steps: int, patience: int, min_delta: float, key: str) -> None:
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ConfigError(
                f"netgrow.train: schedule {self.kind!r} needs plateau_patience >= 1 (epochs without a validation "
                f"gain before it acts), got {patience!r}"
            )
        self.base_lr = float(base_lr)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.patience = patience
        self.min_delta = float(min_delta)
        self.key = key
        self.seen: list[dict[str, Any]] = []

    def _warm(self, step: int) -> float | None:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        return None

    def _values(self, history: list[dict[str, Any]]) -> list[float]:
        return [float(r[self.key]) for r in history if r.get(self.key) is not None]

    def observe(self, history: list[dict[str, Any]]) -> None:
        """Read the stage's epoch rows after an epoch (the last row is the new one)."""
        self.seen = list(history)

    def replay(self, history: list[dict[str, Any]]) -> None:
        """Rebuild the state from a resumed stage's rows (as if each epoch had been observed)."""
        self.reset()
        for i in range(len(history)):
            self.observe(history[: i + 1])

    def reset(self) -> None:
        self.seen = []


class WarmupStableDecay(_HistorySchedule):
    """Warm-up, stable rate until a validation plateau (or the budget's last ``decay_steps``), linear decay,
    stop (see the module docstring)."""

    kind = "wsd"

    def __init__(self, base_lr: float, total_steps: int | None, warmup_steps: int = 0, decay_steps: int = 1,
                 min_lr: float = 0.0, patience: int = 1, min_delta: float = 0.0, decay: bool = True,
                 key: str = "val_acc") -> None:
        super().__init__(base_lr, warmup_steps, patience, min_delta, key)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.decay_steps = max(int(decay_steps), 1)
        self.min_lr = float(min_lr)
        self.decay = bool(decay)
        self.decay_start: int | None = None  # set by a validation plateau
        self.plateau_step: int | None = None  # the step a non-decaying stage saturated at

    def reset(self) -> None:
        super().reset()
        self.decay_start = None
        self.plateau_step = None

    def start(self) -> int | None:
        """The step the decay begins at (plateau or budget, whichever is first; None: not yet known)."""
        if not self.decay:
            return None
        cands = [s for s in (self.decay_start, None if self.total_steps is None
                             else max(self.total_steps - self.decay_steps, self.warmup_steps)) if s is not None]
        return min(cands) if cands else None

    def __call__(self, step: int) -> float:
        warm = self._warm(step)
        if warm is not None:
            return warm
        start = self.start()
        if start is None or step < start:
            return self.base_lr
        t = min((step - start + 1) / self.decay_steps, 1.0)
        return self.base_lr + (self.min_lr - self.base_lr) * t

    def observe(self, history: list[dict[str, Any]]) -> None:
        super().observe(history)
        if not history or self.decay_start is not None or self.plateau_step is not None:
            return
        step = int(history[-1]["step"])
        start = self.start()
        if start is not None and step > start:
            return  # already decaying because of the budget
        if plateaued(self._values(history), self.patience, self.min_delta):
            if self.decay:
                self.decay_start = step
            else:
                self.plateau_step = step

    def finished(self, step: int) -> bool:
        """True once the decay is complete (or, without decay, once the stable phase plateaued)."""
        if not self.decay:
            return self.plateau_step is not None
        start = self.start()
        return start is not None and step >= start + self.decay_steps

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "decay_steps": self.decay_steps, "min_lr": self.min_lr,
                "patience": self.patience, "min_delta": self.min_delta, "decay": self.decay, "key": self.key}


class ReduceOnPlateau(_HistorySchedule):
    """``lr * gamma ** r`` after ``r`` validation plateaus; finished at plateau ``max_reductions + 1``."""

    kind = "plateau"

    def __init__(self, base_lr: float, warmup_steps: int = 0, gamma: float = 0.1, max_reductions: int = 2,
                 patience: int = 1, min_delta: float = 0.0, min_lr: float = 0.0, key: str = "val_acc") -> None:
        super().__init__(base_lr, warmup_steps, patience, min_delta, key)
        if not isinstance(max_reductions, int) or max_reductions < 0:
            raise ConfigError(f"netgrow.train: max_reductions={max_reductions!r} is invalid; use an integer >= 0")
        self.gamma = float(gamma)
        self.max_reductions = max_reductions
        self.min_lr = float(min_lr)
        self.reductions: list[int] = []  # steps at which the rate was reduced
        self.done = False
        self._since = 0  # index of the first validation value after the last reduction

    def reset(self) -> None:
        super().reset()
        self.reductions = []
        self.done = False
        self._since = 0

    def __call__(self, step: int) -> float:
        warm = self._warm(step)
        if warm is not None:
            return warm
        r = sum(1 for s in self.reductions if step >= s)
        return max(self.base_lr * self.gamma**r, self.min_lr)

    def observe(self, history: list[dict[str, Any]]) -> None:
        super().observe(history)
        if not history or self.done:
            return
        values = self._values(history)
        if not plateaued(values, self.patience, self.min_delta, since=self._since):
            return
        if len(self.reductions) >= self.max_reductions:
            self.done = True
        else:
            self.reductions.append(int(history[-1]["step"]))
            self._since = len(values)

    def finished(self, step: int) -> bool:
        return self.done

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "base_lr": self.base_lr, "warmup_steps": self.warmup_steps, "gamma": self.gamma,
                "max_reductions": self.max_reductions, "patience": self.patience, "min_delta": self.min_delta,
                "min_lr": self.min_lr, "key": self.key}


ROLES = ("whole", "first", "middle", "last")


def build_schedule(config: Any, steps_per_epoch: int, total_steps: int, lr: float, role: str = "whole") -> Any:
    """The stage's schedule from a :class:`~netgrow.train.TrainConfig`: an ``LRSchedule`` for the fixed
    kinds, a history-driven one for ``"wsd"`` / ``"plateau"``.

    ``role`` places the stage in a cross-stage schedule (``config.cross_stage``): ``"first"`` warms up and
    does not decay, ``"middle"`` neither, ``"last"`` decays without a warm-up, ``"whole"`` does both.
    Without ``cross_stage`` every stage is ``"whole"``.
    """
    from netgrow.train.optim import LRSchedule

    if role not in ROLES:
        raise ConfigError(f"netgrow.train: schedule role {role!r} is unknown; allowed values: {list(ROLES)}")
    if config.schedule not in ("wsd", "plateau"):
        return LRSchedule.from_config(config, steps_per_epoch, total_steps, lr)
    if not config.cross_stage:
        role = "whole"
    warmup = round(config.warmup_epochs * steps_per_epoch) if role in ("whole", "first") else 0
    patience = config.plateau_patience
    if config.schedule == "plateau":
        return ReduceOnPlateau(lr, warmup, config.gamma, config.max_reductions, patience, config.plateau_min_delta,
                               min(config.min_lr, lr))
    return WarmupStableDecay(
        lr, total_steps, warmup, decay_steps=round(config.decay_epochs * steps_per_epoch), min_lr=min(config.min_lr, lr),
        patience=patience if patience is not None else 10**9, min_delta=config.plateau_min_delta,
        decay=role in ("whole", "last"),
    )

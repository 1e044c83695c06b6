"""The one strategy registry: name -> :class:`Strategy` (its options parser, plan, run and first models).

Each strategy module owns its options dataclass, the parsing of its TOML section, its plan and its run,
and exposes them as a module-level ``STRATEGY``. The experiment config and the CLI only ask this
registry, so a new strategy is one module plus one line in ``BUILTIN`` (or ``register_strategy``)::

    >>> from netgrow.strategies.registry import get_strategy, strategy_names
    >>> strategy_names()
    ('scratch', 'net2net', 'cumulative', 'incremental')
    >>> get_strategy("cumulative").section
    'cumulative'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netgrow.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from netgrow.strategies.base import Experiment, Stage
    from netgrow.strategies.experiment import DataConfig, ExperimentConfig, ModelConfig
    from netgrow.strategies.schema import Section
    from netgrow.train.config import TrainConfig


def default_epochs(train: "TrainConfig") -> int:
    """The default per-stage epoch budget: ``train.epochs`` (10 when only ``train.steps`` is set)."""
    return int(train.epochs) if train.epochs is not None else 10


@dataclass(frozen=True)
class ParseContext:
    """What a strategy's options parser may read besides its own section (already validated)."""

    data: "DataConfig"
    model: "ModelConfig"
    train: "TrainConfig"
    source: str

    @property
    def epochs(self) -> int:
        """The default per-stage epoch budget (:func:`default_epochs`)."""
        return default_epochs(self.train)


@dataclass(frozen=True)
class Strategy:
    """One growth strategy.

    ``section``: the name of its TOML table (None: it has none); ``parse(section, ctx)`` returns its
    options (a frozen dataclass, or None); ``plan(cfg, class_counts)`` the planned stages; ``run(exp)``
    trains them; ``first_models(cfg)`` lists ``(config key, arch, width)`` of every model the run builds
    from scratch (checked against the data before a run directory exists); ``check_model(cfg, model)``
    any further check of such a model (e.g. the incremental partition); ``decides_on_validation`` names the
    strategy's own rule that reads validation accuracy (then ``data.val_fraction = 0`` is refused).
    """

    name: str
    parse: Callable[["Section", ParseContext], Any]
    plan: Callable[["ExperimentConfig", list[int]], list["Stage"]]
    run: Callable[["Experiment"], None]
    first_models: Callable[["ExperimentConfig"], list[tuple[str, str, float]]]
    section: str | None = None
    section_required: bool = False
    check_model: Callable[["ExperimentConfig", "nn.Module"], None] | None = None
    decides_on_validation: str | None = None  # the strategy's own accuracy-driven rule, if any (needs val data)


BUILTIN = {
    "scratch": "netgrow.strategies.scratch",
    "net2net": "netgrow.strategies.net2net",
    "cumulative": "netgrow.strategies.cumulative",
    "incremental": "netgrow.strategies.incremental",
}
_registered: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> None:
    """Make ``strategy`` available as ``strategy = "<name>"`` in experiment configs."""
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"netgrow.strategies.register_strategy: expected a Strategy, got {type(strategy).__name__}")
    _registered[strategy.name] = strategy


def strategy_names() -> tuple[str, ...]:
    """Every strategy name a config may use."""
    return tuple(BUILTIN) + tuple(n for n in _registered if n not in BUILTIN)


def get_strategy(name: str) -> Strategy:
    """The registered strategy ``name`` (``ConfigError`` listing the known ones otherwise)."""
    if name in _registered:
        return _registered[name]
    if name not in BUILTIN:
        raise ConfigError(f"unknown strategy {name!r}; allowed: {', '.join(strategy_names())}")
    return importlib.import_module(BUILTIN[name]).STRATEGY

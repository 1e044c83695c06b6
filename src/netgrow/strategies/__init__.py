"""Growth strategies, each a list of stages run by the one Trainer (``netgrow.train.Trainer``).

- ``scratch``     the final network from random initialisation (the baseline);
- ``net2net``     teacher -> wider/deeper student, with the ``random_pad`` / ``random_init`` baselines;
- ``cumulative``  Feng & Panda's Algorithm 1: classes and network grow together (optional pruning, zero mask);
- ``incremental`` Istrate et al.: sub-networks added when the angle criterion fires (look-ahead init).

``run_experiment(cfg, run_dir, train_set, test_set)`` writes ``RUN_DIR/config.json``, runs the strategy and
writes ``RUN_DIR/summary.json``; it returns the summary dict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netgrow.strategies.angle import AngleStopping, should_grow, window_angle, window_angles
from netgrow.strategies.base import Experiment, Stage
from netgrow.strategies.run_config import write_config
from netgrow.strategies.registry import BUILTIN, Strategy, get_strategy, register_strategy, strategy_names

if TYPE_CHECKING:
    from netgrow.strategies.experiment import ExperimentConfig

log = logging.getLogger(__name__)

STRATEGIES = BUILTIN  # name -> module (the built-in strategies)

__all__ = ["STRATEGIES", "AngleStopping", "Experiment", "Stage", "Strategy", "get_strategy", "plan",
           "register_strategy", "run_experiment", "should_grow", "strategy_names", "window_angle", "window_angles"]


def plan(cfg: "ExperimentConfig", class_counts: list[int]) -> list[Stage]:
    """The planned stages of ``cfg`` (for incremental: the sub-network phases if every one is added)."""
    return get_strategy(cfg.strategy).plan(cfg, class_counts)


def run_experiment(cfg: "ExperimentConfig", run_dir: str | Path, train_set: Any, test_set: Any, *,
                   quiet: bool = False, resume: bool = False, trainer: Any = None,
                   changes: Sequence[str] = ()) -> dict[str, Any]:
    """Run one validated experiment (schedule already resolved) into ``run_dir``; returns the summary.

    With ``resume=True`` the strategy re-runs its stages in order and the Trainer skips the finished ones
    and continues the one in progress from its last checkpoint. ``changes`` names the config keys changed
    on purpose since the run started (``--resume --set``); they are recorded in RUN_DIR/history.jsonl.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(cfg, run_dir, resume, changes)
    exp = Experiment(cfg, run_dir, train_set, test_set, quiet=quiet, resume=resume, trainer=trainer)
    get_strategy(cfg.strategy).run(exp)
    return exp.write_summary()

"""Growth strategies, each a list of stages run by the one Trainer (``netgrow.train.Trainer``).

- ``scratch``     the final network from random initialisation (the baseline);
- ``net2net``     teacher -> wider/deeper student, with the ``random_pad`` / ``random_init`` baselines;
- ``cumulative``  Feng & Panda's Algorithm 1: classes and network grow together (optional pruning, zero mask);
- ``incremental`` Istrate et al.: sub-networks added when the angle criterion fires (look-ahead init).

``run_experiment(cfg, run_dir, train_set, test_set)`` writes ``RUN_DIR/config.json``, runs the strategy and
writes ``RUN_DIR/summary.json``; it returns the summary dict.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netgrow.strategies.angle import AngleStopping, should_grow, window_angle, window_angles
from netgrow.strategies.base import Experiment, Stage, write_config

if TYPE_CHECKING:
    from netgrow.cli.config import ExperimentConfig

log = logging.getLogger(__name__)

STRATEGIES = {
    "scratch": "netgrow.strategies.scratch",
    "net2net": "netgrow.strategies.net2net",
    "cumulative": "netgrow.strategies.cumulative",
    "incremental": "netgrow.strategies.incremental",
}

__all__ = ["STRATEGIES", "AngleStopping", "Experiment", "Stage", "plan", "run_experiment", "should_grow",
           "window_angle", "window_angles"]


def plan(cfg: "ExperimentConfig", class_counts: list[int]) -> list[Stage]:
    """The planned stages of ``cfg`` (for incremental: the sub-network phases if every one is added)."""
    return importlib.import_module(STRATEGIES[cfg.strategy]).plan(cfg, class_counts)


def run_experiment(cfg: "ExperimentConfig", run_dir: str | Path, train_set: Any, test_set: Any, *,
                   quiet: bool = False, resume: bool = False, trainer: Any = None) -> dict[str, Any]:
    """Run one validated experiment (schedule already resolved) into ``run_dir``; returns the summary.

    With ``resume=True`` the strategy re-runs its stages in order and the Trainer skips the finished ones
    and continues the one in progress from its last checkpoint.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(cfg, run_dir, resume)
    exp = Experiment(cfg, run_dir, train_set, test_set, quiet=quiet, resume=resume, trainer=trainer)
    importlib.import_module(STRATEGIES[cfg.strategy]).run(exp)
    return exp.write_summary()

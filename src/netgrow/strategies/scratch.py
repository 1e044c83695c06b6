"""The baseline: the final network trained from random initialisation on the full data, as one stage."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from netgrow.strategies.base import Stage
from netgrow.strategies.experiment import require_arch, single_stage
from netgrow.strategies.registry import ParseContext, Strategy, default_epochs
from netgrow.strategies.rules import make_rule

if TYPE_CHECKING:
    from netgrow.strategies.base import Experiment
    from netgrow.strategies.experiment import ExperimentConfig

log = logging.getLogger(__name__)


def stopping_rule(cfg: "ExperimentConfig") -> Any:
    """A fresh stopping rule from the config's ``[stopping]`` table (one object per stage)."""
    s = cfg.stopping
    return make_rule(s.rule, patience=s.patience, min_delta=s.min_delta, ws=s.ws, gamma=s.gamma,
                     min_epochs=s.min_epochs)


def parse(section: None, ctx: ParseContext) -> None:
    """Scratch has no section of its own; it needs ``model.arch`` and one class set."""
    require_arch(ctx.model, "scratch", ctx.source)
    single_stage(ctx.data, "scratch", ctx.source)


def first_models(cfg: "ExperimentConfig") -> list[tuple[str, str, float]]:
    return [("model.arch", str(cfg.model.arch), cfg.model.width)]


def plan(cfg: "ExperimentConfig", class_counts: list[int]) -> list[Stage]:
    """One stage: ``model.arch`` at ``model.width`` on all ``class_counts[-1]`` classes."""
    arch = cfg.model.arch
    assert arch is not None  # validated by the config
    return [Stage(name=f"scratch-{arch}", classes=class_counts[-1], arch=arch, width=cfg.model.width,
                  epochs=default_epochs(cfg.train), data_index=len(class_counts) - 1,
                  stopping=stopping_rule(cfg))]


def run(exp: "Experiment") -> None:
    """Train the scratch baseline."""
    (stage,) = plan(exp.cfg, exp.class_counts)
    model = exp.create(stage.arch, stage.classes, stage.width)
    exp.run_stage(0, stage, model)


STRATEGY = Strategy(name="scratch", parse=parse, plan=plan, run=run, first_models=first_models)

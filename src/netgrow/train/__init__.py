"""netgrow.train: the Trainer, its config, compute meter, checkpoints, MAC counter and model files.

Public API (imported lazily so ``import netgrow.train`` stays light)::

    Trainer(run_dir, config, quiet=False, resume=False).run_stage(stage, name, model, train, test, ...)
    TrainConfig(...), StageResult, Plateau, any_of, LRSchedule, build_optimizer, ComputeMeter
    count_macs(model, example_input, by_module=False, masks=None)
    save(model, path) / load(path, base=None)
    carry_optimizer_state(old_state, old_model, new_optimizer, new_model, param_map)

Compute accounting (the cumulative paper's Eq. 1): ``M = sum over stages of samples x forward MACs per
sample``; training FLOPs are estimated as ``3 x 2 x M`` (forward + backward ~ 3 forward passes, 2 FLOPs per
MAC).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Trainer": "netgrow.train.trainer",
    "StageResult": "netgrow.train.trainer",
    "seed_everything": "netgrow.train.trainer",
    "TrainConfig": "netgrow.train.config",
    "OPTIMIZERS": "netgrow.train.config",
    "SCHEDULES": "netgrow.train.config",
    "LRSchedule": "netgrow.train.optim",
    "build_optimizer": "netgrow.train.optim",
    "Plateau": "netgrow.train.stopping",
    "StoppingRule": "netgrow.train.stopping",
    "any_of": "netgrow.train.stopping",
    "ComputeMeter": "netgrow.train.meter",
    "peak_memory": "netgrow.train.meter",
    "MetricsWriter": "netgrow.train.metrics",
    "count_macs": "netgrow.train.macs",
    "save": "netgrow.train.serialization",
    "load": "netgrow.train.serialization",
    "model_to_tensors": "netgrow.train.serialization",
    "model_from_tensors": "netgrow.train.serialization",
    "carry_optimizer_state": "netgrow.train.carry",
    "graceful_stop": "netgrow.train.interrupt",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'netgrow.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

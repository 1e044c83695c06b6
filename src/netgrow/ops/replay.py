"""Rebuild an architecture from a base model plus a growth log (used when loading checkpoints).

Every op record carries ``"op"``, ``"input_shape"`` and ``"input_dtype"`` and everything else its op
needs; each op module defines ``replay(model, record) -> nn.Module``, which rebuilds the module
structure and tensor shapes (the weights are then loaded from the checkpoint, so their values do not
matter and no verification is run).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import torch
from torch import nn

from netgrow.errors import CheckpointError, NetgrowValueError

# op name -> the module defining its replay(); layers above register their own ops (netgrow.models: "grow")
OP_MODULES = {
    "widen": "netgrow.ops.widen",
    "prune": "netgrow.ops.prune",
    "deepen": "netgrow.ops.deepen",
    "expand_classes": "netgrow.ops.expand",
}


def register_replay(op: str, module: str) -> None:
    """Make ``replay_log`` replay records of ``op`` with ``module``'s ``replay(model, record)``."""
    if OP_MODULES.setdefault(op, module) != module:
        raise NetgrowValueError(f"growth op {op!r} is already replayed by {OP_MODULES[op]}; pick another op name")


def example_input(record: dict[str, Any]) -> torch.Tensor:
    """A zero input of the shape and dtype the op was recorded with."""
    return torch.zeros(record["input_shape"], dtype=getattr(torch, record.get("input_dtype", "float32")))


def replay_log(model: nn.Module, log: list[dict[str, Any]]) -> nn.Module:
    """Apply every record of ``log`` to ``model`` in order; returns the rebuilt model.

    The ops' own "widen: ..." / "grow: ..." info lines are held back: a rebuild is not growth, and
    loading every stage of a run would repeat them once per stage.
    """
    # "netgrow.ops" covers every op module and their helpers (e.g. deepen's copy_block in ops.deepen_copy);
    # registered replays may live elsewhere (models.grow), so their modules are named too
    loggers = [logging.getLogger(name) for name in {"netgrow.ops", *OP_MODULES.values()}]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        for i, record in enumerate(log):
            op = record.get("op")
            if op not in OP_MODULES:
                raise CheckpointError(f"growth log entry {i} has unknown op {op!r}; known ops: {sorted(OP_MODULES)}")
            model = importlib.import_module(OP_MODULES[op]).replay(model, record)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return model

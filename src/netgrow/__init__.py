"""netgrow: grow neural networks while they train.

Public API (imported lazily so ``import netgrow`` stays fast)::

    netgrow.channel_groups(model, example_input)
    netgrow.register_rule(MyLayer, netgrow.LayerRule(...))   (teach netgrow a layer type)
    netgrow.widen(model, widths, example_input=x)
    netgrow.deepen(model, after, example_input=x, data=None)
    netgrow.expand_classes(model, num_classes, example_input=x)
    netgrow.prune(model, ratio, example_input=x)
    netgrow.count_macs(model, example_input)
    netgrow.save(model, path) / netgrow.load(path, base=None)
"""

from __future__ import annotations

import importlib
from typing import Any

from netgrow.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    LockedGroupError,
    NetgrowError,
    NetgrowTypeError,
    NetgrowValueError,
    RunInterrupted,
    StorageError,
    TraceError,
    TrainingError,
    VerificationError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "channel_groups": "netgrow.graph",
    "ChannelGroup": "netgrow.graph",
    "LayerRule": "netgrow.graph.rules",
    "register_rule": "netgrow.graph.rules",
    # the defining submodule itself, not its package: a package attribute named like a submodule
    # becomes that submodule once it is imported
    "widen": "netgrow.ops.widen",
    "deepen": "netgrow.ops.deepen",
    "expand_classes": "netgrow.ops.expand",
    "prune": "netgrow.ops.prune",
    "param_map": "netgrow.ops.param_map",
    "growth_log": "netgrow.spec",
    "count_macs": "netgrow.train.macs",
    "save": "netgrow.train.serialization",
    "load": "netgrow.train.serialization",
}

__all__ = sorted(
    [
        *_LAZY,
        "NetgrowError",
        "NetgrowValueError",
        "NetgrowTypeError",
        "TraceError",
        "LockedGroupError",
        "VerificationError",
        "CheckpointError",
        "ConfigError",
        "DataError",
        "TrainingError",
        "StorageError",
        "RunInterrupted",
    ]
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'netgrow' has no attribute {name!r}")

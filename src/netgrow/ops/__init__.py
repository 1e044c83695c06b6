"""Growth ops: pure functions, model in, new model out (the input is never mutated).

- ``widen``  (``netgrow.ops.widen``)   Net2WiderNet / random pad over channel groups
- ``prune``  (``netgrow.ops.prune``)   L1-norm structured filter pruning over the same groups
- ``deepen`` (``netgrow.ops.deepen``)  Net2DeeperNet identity layers, zero-init residual blocks
- ``expand_classes`` (``netgrow.ops.expand``) new output rows for new classes
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "widen": "netgrow.ops.widen",
    "prune": "netgrow.ops.prune",
    "deepen": "netgrow.ops.deepen",
    "expand_classes": "netgrow.ops.expand",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'netgrow.ops' has no attribute {name!r}")

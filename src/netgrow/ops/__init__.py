"""Growth ops: pure functions, model in, new model out (the input is never mutated).

- ``widen``  (``netgrow.ops.widen``)   Net2WiderNet / random pad over channel groups
- ``prune``  (``netgrow.ops.prune``)   L1-norm structured filter pruning over the same groups
- ``prune_kernels`` (``netgrow.ops.kernel_prune``) L1 2-D kernel pruning over all convs (zeros + masks)
- ``deepen`` (``netgrow.ops.deepen``)  Net2DeeperNet identity layers, zero-init residual blocks
- ``expand_classes`` (``netgrow.ops.expand``) new output rows for new classes
"""

from __future__ import annotations

# Each function lives in a submodule of the same name; importing the function last binds the package
# attribute to the function (importing a submodule binds the attribute to the module).
from netgrow.ops.deepen import deepen
from netgrow.ops.expand import expand_classes
from netgrow.ops.kernel_prune import prune_kernels
from netgrow.ops.prune import prune
from netgrow.ops.widen import widen

__all__ = ["deepen", "expand_classes", "prune", "prune_kernels", "widen"]

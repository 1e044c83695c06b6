"""Width scaling for the model families; their layers come from ``netgrow.ops.blocks`` (shared with deepen)."""

from __future__ import annotations

from netgrow.ops.blocks import BasicBlock, batchnorm, conv

__all__ = ["BasicBlock", "batchnorm", "conv", "scaled"]


def scaled(channels: int, width: float) -> int:
    """Channels under a width multiplier: ``max(1, round(c * width))``.

        >>> scaled(64, 0.25), scaled(3, 0.1)
        (16, 1)
    """
    return max(1, round(channels * width))

"""CIFAR ResNet-20/32/44/56/110 (He et al. 2016, section 4.2).

A 3x3 stem conv (16 channels), three stages ``layer1..layer3`` of n basic blocks with 16/32/64 channels
(x width; stages 2 and 3 start with stride 2), global average pooling and a ``Linear`` classifier;
depth = 6n + 2. Shortcuts that change shape use option B (1x1 conv + BN projection, see
``netgrow.ops.blocks.BasicBlock``): a conv the channel-group engine can widen. That adds 2,752
parameters to every depth at width 1 over the paper's option A (zero padding): ResNet-20 has 272,474
parameters on CIFAR-10 (published 0.27M), ResNet-56 855,770 (published 0.85M).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from netgrow.models.blocks import BasicBlock, scaled
from netgrow.models.registry import InputSize, register_model, spatial_sizes

DEPTHS = (20, 32, 44, 56, 110)
STAGE_CHANNELS = (16, 32, 64)


def blocks_per_stage(depth: int) -> int:
    """n of a depth-(6n+2) CIFAR ResNet."""
    return (depth - 2) // 6


class ResNet(nn.Module):
    """A CIFAR ResNet with ``blocks`` basic blocks per stage and the given stage channels."""

    def __init__(
        self, blocks: int, channels: Sequence[int] = STAGE_CHANNELS, num_classes: int = 10, in_channels: int = 3
    ):
        super().__init__()
        c = channels[0]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        stages = []
        for i, out in enumerate(channels):
            stride = 1 if i == 0 else 2
            first = BasicBlock(c, out, stride)
            stages.append(nn.Sequential(first, *[BasicBlock(out, out) for _ in range(blocks - 1)]))
            c = out
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.classifier(torch.flatten(self.pool(x), 1))


def _resnet(depth: int, num_classes: int, width: float, in_channels: int, input_size: InputSize) -> ResNet:
    spatial_sizes(input_size, 2)
    channels = [scaled(c, width) for c in STAGE_CHANNELS]
    return ResNet(blocks_per_stage(depth), channels, num_classes, in_channels)


@register_model
def resnet20(num_classes: int = 10, width: float = 1.0, in_channels: int = 3, input_size: InputSize = 32) -> ResNet:
    """ResNet-20 (3 blocks per stage)."""
    return _resnet(20, num_classes, width, in_channels, input_size)


@register_model
def resnet32(num_classes: int = 10, width: float = 1.0, in_channels: int = 3, input_size: InputSize = 32) -> ResNet:
    """ResNet-32 (5 blocks per stage)."""
    return _resnet(32, num_classes, width, in_channels, input_size)


@register_model
def resnet44(num_classes: int = 10, width: float = 1.0, in_channels: int = 3, input_size: InputSize = 32) -> ResNet:
    """ResNet-44 (7 blocks per stage)."""
    return _resnet(44, num_classes, width, in_channels, input_size)


@register_model
def resnet56(num_classes: int = 10, width: float = 1.0, in_channels: int = 3, input_size: InputSize = 32) -> ResNet:
    """ResNet-56 (9 blocks per stage)."""
    return _resnet(56, num_classes, width, in_channels, input_size)


@register_model
def resnet110(num_classes: int = 10, width: float = 1.0, in_channels: int = 3, input_size: InputSize = 32) -> ResNet:
    """ResNet-110 (18 blocks per stage)."""
    return _resnet(110, num_classes, width, in_channels, input_size)

"""A small 1-D CNN for sequences such as MNIST-1D (length 40, 1 channel).

``features`` = three ``Conv1d(k=5, pad 2)-BatchNorm1d-ReLU-MaxPool1d(2, ceil_mode)`` stages with
32/64/128·width channels (length 40 -> 20 -> 10 -> 5), then Flatten; a ``Linear`` classifier on the flattened
map keeps the positional information MNIST-1D's templates carry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from netgrow.models.blocks import scaled
from netgrow.models.registry import InputSize, register_model, spatial_sizes

CHANNELS = (32, 64, 128)


class CNN1d(nn.Module):
    """Conv1d stages with pooling, flatten, Linear classifier."""

    def __init__(self, length: int, channels: Sequence[int] = CHANNELS, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for out in channels:
            layers += [nn.Conv1d(c, out, 5, padding=2, bias=False), nn.BatchNorm1d(out), nn.ReLU()]
            layers.append(nn.MaxPool1d(2, 2, ceil_mode=True))
            length = math.ceil(length / 2)
            c = out
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model
def cnn1d(num_classes: int = 10, width: float = 1.0, in_channels: int = 1, input_size: InputSize = 40) -> CNN1d:
    """The 1-D CNN; ``input_size`` is the sequence length."""
    (length,) = spatial_sizes(input_size, 1)
    return CNN1d(length, [scaled(c, width) for c in CHANNELS], num_classes, in_channels)

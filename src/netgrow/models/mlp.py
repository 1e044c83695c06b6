"""A multilayer perceptron for small inputs (MNIST-1D sequences, 28x28 images, digits).

``features`` = Flatten then two hidden ``Linear-BatchNorm1d-ReLU`` layers of 128·width units; a ``Linear``
classifier. The input is (N, C, *spatial) (or (N, L) for 1-channel sequences) with
in_features = C·prod(spatial): pass ``input_size=[40]`` for MNIST-1D, ``input_size=28`` for 28x28 images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from netgrow.models.blocks import scaled
from netgrow.models.registry import InputSize, register_model, spatial_sizes

HIDDEN = (128, 128)


class MLP(nn.Module):
    """Flatten -> [Linear-BN-ReLU] per hidden width -> Linear classifier."""

    def __init__(self, in_features: int, hidden: Sequence[int] = HIDDEN, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        c = in_features
        for h in hidden:
            layers += [nn.Linear(c, h, bias=False), nn.BatchNorm1d(h), nn.ReLU()]
            c = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model
def mlp(num_classes: int = 10, width: float = 1.0, in_channels: int = 1, input_size: InputSize = 28) -> MLP:
    """The MLP; an int ``input_size`` means a square image, a list gives every spatial size."""
    sizes = spatial_sizes(input_size, 2 if isinstance(input_size, int) else len(input_size))
    return MLP(in_channels * math.prod(sizes), [scaled(h, width) for h in HIDDEN], num_classes)

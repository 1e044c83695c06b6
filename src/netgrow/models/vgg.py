"""VGG-11/13/16/19 with BatchNorm, CIFAR style (Simonyan & Zisserman 2015; kuangliu/pytorch-cifar layout).

``features`` is one flat ``nn.Sequential`` of Conv3x3(pad 1)-BN-ReLU triples with a 2x2 max-pool closing
each of the five stages; then a global average pool and a single ``Linear`` classifier. The members differ
only in convs per stage, so a grown VGG11 (``netgrow.models.grow``) has exactly the keys of a fresh VGG19.

Small inputs: the pools use ``ceil_mode=True``, so a map never shrinks below 1x1 (28 -> 14 -> 7 -> 4 -> 2
-> 1; 32 -> 1x1; 64 -> 2x2), and the adaptive average pool makes the classifier input 512·width for
every input size (a no-op at 1x1, the CIFAR case whose parameter counts are the published ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from netgrow.errors import NetgrowValueError
from netgrow.models.blocks import scaled
from netgrow.models.registry import InputSize, register_model, spatial_sizes

# channels of each conv, per stage; every stage ends with a max-pool
STAGES: dict[str, list[list[int]]] = {
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


class VGG(nn.Module):
    """A VGG of the given per-stage channel lists (see ``STAGES``)."""

    def __init__(self, stages: Sequence[Sequence[int]], num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for stage in stages:
            for out in stage:
                # conv bias kept (though BN follows) to match the reference VGG's parameter counts
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
                c = out
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def stage_layout(features: nn.Sequential) -> list[list[int]]:
    """Indices into ``features`` of each stage's convs; checks the Conv-BN-ReLU ... MaxPool pattern."""
    stages: list[list[int]] = []
    current: list[int] = []
    i, mods = 0, list(features)
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.MaxPool2d):
            stages.append(current)
            current, i = [], i + 1
        elif (
            isinstance(m, nn.Conv2d)
            and i + 2 < len(mods)
            and isinstance(mods[i + 1], nn.BatchNorm2d)
            and isinstance(mods[i + 2], nn.ReLU)
        ):
            current.append(i)
            i += 3
        else:
            raise NetgrowValueError(
                f"features.{i} ({type(m).__name__}) breaks the VGG layout Conv2d-BatchNorm2d-ReLU ... MaxPool2d; "
                "this VGG was modified (e.g. deepened) and no longer has a family member's structure"
            )
    if current or len(stages) != 5:
        raise NetgrowValueError(
            f"a VGG has 5 stages each closed by a MaxPool2d; found {len(stages)} (+{len(current)} open convs)"
        )
    return stages


def _vgg(name: str, num_classes: int, width: float, in_channels: int, input_size: InputSize) -> VGG:
    spatial_sizes(input_size, 2)  # validates; the layout itself adapts to any size
    stages = [[scaled(c, width) for c in stage] for stage in STAGES[name]]
    return VGG(stages, num_classes, in_channels)


@register_model
def vgg11(num_classes: int = 10, width: float = 1.0, in_channels: int = 3, input_size: InputSize = 32) -> VGG:
    """VGG-11 with BatchNorm (8 convs)."""
    return _vgg("vgg11", num_classes, width, in_channels, input_size)


@register_model
def vgg13(num_classes: int = 10, width: float = 1.0, in_channels: int = 3, input_size: InputSize = 32) -> VGG:
    """VGG-13 with BatchNorm (10 convs)."""
    return _vgg("vgg13", num_classes, width, in_channels, input_size)


@register_model
def vgg16(num_classes: int = 10, width: float = 1.0, in_channels: int = 3, input_size: InputSize = 32) -> VGG:
    """VGG-16 with BatchNorm (13 convs)."""
    return _vgg("vgg16", num_classes, width, in_channels, input_size)


@register_model
def vgg19(num_classes: int = 10, width: float = 1.0, in_channels: int = 3, input_size: InputSize = 32) -> VGG:
    """VGG-19 with BatchNorm (16 convs)."""
    return _vgg("vgg19", num_classes, width, in_channels, input_size)

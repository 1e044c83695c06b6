"""netgrow.models: VGG, CIFAR ResNet, MLP, 1-D CNN and GPT families with exact growth paths.

    >>> import torch, netgrow.models as M
    >>> small = M.create("vgg11", num_classes=10, width=0.25)
    >>> big = M.grow(small, "vgg19", example_input=torch.randn(2, 3, 32, 32))
    >>> M.architecture(big), sorted(big.state_dict()) == sorted(M.create("vgg19", width=0.25).state_dict())
    ('vgg19', True)
"""

from __future__ import annotations

# importing the family modules registers their entry points
from netgrow.models import cnn1d as _cnn1d  # noqa: F401
from netgrow.models import gpt as _gpt  # noqa: F401
from netgrow.models import mlp as _mlp  # noqa: F401
from netgrow.models import resnet as _resnet  # noqa: F401
from netgrow.models import vgg as _vgg  # noqa: F401
from netgrow.models.blocks import BasicBlock
from netgrow.models.cnn1d import CNN1d
from netgrow.models.gpt import GPT, GPTConfig
from netgrow.models.mlp import MLP
from netgrow.models.registry import architecture, create, list_models, output_layer, register_model
from netgrow.models.resnet import ResNet
from netgrow.models.vgg import VGG

# last: binds the name `grow` to the function (not the submodule of the same name)
from netgrow.models.grow import grow  # noqa: E402

__all__ = [
    "BasicBlock",
    "CNN1d",
    "GPT",
    "GPTConfig",
    "MLP",
    "ResNet",
    "VGG",
    "architecture",
    "create",
    "grow",
    "list_models",
    "output_layer",
    "register_model",
]


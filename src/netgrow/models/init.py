"""He (Kaiming) initialisation, the incremental paper's choice (Istrate et al., section 4).

``he_init(model, seed)`` returns a copy of ``model`` whose conv and linear weights are drawn from
N(0, 2 / fan_out) (``kaiming_normal_``, mode ``fan_out``, ReLU gain: He et al. 2015 for conv layers), biases
zero, BatchNorm weights 1 and biases 0. PyTorch's own default (kaiming-uniform with a = sqrt(5)) is what
``netgrow.models.create`` gives; ``[model] init = "he"`` in an experiment selects this one.

Example::

    >>> import torch
    >>> from netgrow.models import create
    >>> from netgrow.models.init import he_init
    >>> m = he_init(create("vgg11", num_classes=10, width=0.25), seed=0)
    >>> w = m.features[0].weight.detach()
    >>> abs(w.std().item() / (2 / (w.shape[0] * 9)) ** 0.5 - 1) < 0.2, float(m.features[0].bias.detach().abs().max())
    (True, 0.0)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

INITS = ("default", "he")


def he_init(model: nn.Module, seed: int | None = None) -> nn.Module:
    """A He-initialised copy of ``model`` (``model`` is not modified); ``seed`` fixes the draw."""
    new = copy.deepcopy(model)
    gen_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        with torch.no_grad():
            for m in new.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and m.affine:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
    finally:
        if seed is not None:
            torch.random.set_rng_state(gen_state)
    return new

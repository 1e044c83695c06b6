"""netgrow.graph: channel groups of a model, found by tracing it with torch.fx and reading the layer-rule
registry (``netgrow.graph.rules``); the output layer and deepen's insertion point, from the same trace.

    >>> import torch
    >>> from torch import nn
    >>> from netgrow.graph import channel_groups
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
    >>> g = channel_groups(net, torch.randn(1, 3, 6, 6))[1]
    >>> g.producers, g.passthrough, g.consumers
    (['0'], ['1', '2'], [Consumer(module='4', offset=0, block=16)])
"""

from netgrow.graph.groups import ChannelGraph, ChannelGroup, Consumer, ModuleUse, Segment, analyse, channel_groups
from netgrow.graph.output import output_layer
from netgrow.graph.rules import LayerRule, register_rule, unregister_rule

__all__ = [
    "ChannelGraph", "ChannelGroup", "Consumer", "LayerRule", "ModuleUse", "Segment", "analyse", "channel_groups",
    "output_layer", "register_rule", "unregister_rule",
]  # fmt: skip

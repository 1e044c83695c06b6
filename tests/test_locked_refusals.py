"""widen and prune refuse, naming every group's reason, when nothing in the model can be resized."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netgrow
from archs import single_thread  # noqa: F401 (fixture)
from netgrow.errors import LockedGroupError

pytestmark = pytest.mark.usefixtures("single_thread")


class TinyConvNeXt(nn.Module):
    """ConvNeXt's layout: LayerNorm over channels moved last by permute, a layer-scale ``gamma``.

    With ``mlp=False`` the block has no hidden Linear group, so every hidden channel group is locked.
    ``gamma`` is a fixed buffer here: a layer-scale *parameter* follows the channels (a ``get_attr`` use,
    copied by the mapping), which would make the residual stream resizable.
    """

    def __init__(self, c: int = 8, mlp: bool = True):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 2, stride=2)
        self.stem_norm = nn.LayerNorm(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)) if mlp else nn.Identity()
        self.register_buffer("gamma", torch.full((c,), 0.5))
        self.head = nn.Linear(c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_norm(self.stem(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        y = self.mlp(self.norm(self.dw(x).permute(0, 2, 3, 1)))
        x = x + (self.gamma * y).permute(0, 3, 1, 2)
        return self.head(x.mean((2, 3)))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_prune_refuses_a_convnext_whose_conv_groups_are_all_locked_or_normalised():
    model, x = TinyConvNeXt(), torch.randn(2, 3, 8, 8)
    before = _state(model)
    with pytest.raises(LockedGroupError) as info:
        netgrow.prune(model, 0.5, x)
    message = str(info.value)
    assert message.startswith("prune: nothing in TinyConvNeXt can be pruned")
    # the residual stream: the stem's channels meet the layer-scaled branch, whose own group gamma locks
    assert "group 'stem': add at node 'add' combines these channels with the fixed-size tensor" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the MLP's hidden group is a Linear group: widen still works on it
    wide = netgrow.widen(model, 2.0, x, seed=0)
    assert wide.mlp[0].out_features == 64 and wide.stem.out_channels == 8


def test_widen_refuses_when_every_hidden_group_is_locked():
    model, x = TinyConvNeXt(mlp=False), torch.randn(2, 3, 8, 8)
    hidden = [g for g in netgrow.channel_groups(model, x) if g.producers and not g.is_output]
    assert hidden and all(g.locked for g in hidden)
    with pytest.raises(LockedGroupError, match=r"widen: every hidden channel group is locked, so nothing in "
                                               r"TinyConvNeXt can be widened: group 'stem': .*fixed-size tensor 'gamma'"):
        netgrow.widen(model, 1.5, x)
    with pytest.raises(LockedGroupError, match="prune: nothing in TinyConvNeXt can be pruned"):
        netgrow.prune(model, 0.3, x)


def test_models_without_conv_groups_or_with_nothing_to_grow_are_not_refused():
    mlp, x = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)), torch.randn(3, 4)
    assert netgrow.prune(mlp, 0.5, x)[0].out_features == 6  # no conv filters: nothing to prune, no lock
    assert netgrow.widen(mlp, 1.0, x)[0].out_features == 6  # factor 1: nothing grows, nothing locked
    single = nn.Linear(4, 2)
    assert netgrow.widen(single, 2.0, x).out_features == 2  # no hidden group at all


def test_a_layer_scale_parameter_follows_the_channels():
    class LayerScale(TinyConvNeXt):
        def __init__(self):
            super().__init__()
            del self.gamma
            self.gamma = nn.Parameter(torch.rand(8) + 0.5)

    model, x = LayerScale().double(), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    wide = netgrow.widen(model, 2.0, x, seed=0)  # the stream under LayerNorm grows x2 (tiled), gamma with it
    assert wide.stem.out_channels == 16 and wide.gamma.shape == (16,)
    y = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert float((model(y) - wide(y)).abs().max()) < 1e-10

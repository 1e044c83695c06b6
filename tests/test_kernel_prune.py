"""Kernel-level pruning: the smallest-L1 2-D kernels over all convs go, MACs drop by exactly their work, and
the cumulative strategy holds them at zero through the next stage."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from netgrow.errors import NetgrowValueError
from netgrow.ops import prune_kernels
from netgrow.train.macs import count_macs


def _net():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.ReLU(),
                      nn.Flatten(), nn.Linear(3 * 6 * 6, 5))
    with torch.no_grad():  # distinct, known kernel norms: kernel (o, i) of conv j has |w| = 1 + o*10 + i (+100 j)
        for j, conv in ((0, m[0]), (1, m[2])):
            o, i = torch.meshgrid(torch.arange(conv.out_channels), torch.arange(conv.in_channels), indexing="ij")
            conv.weight.copy_(((1 + o * 10 + i + 100 * j).float() / 9)[:, :, None, None].expand_as(conv.weight))
    return m


def test_smallest_kernels_over_all_layers_go_and_macs_drop_exactly():
    m = _net()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    pruned, masks = prune_kernels(m, 0.25)  # 8 + 12 = 20 kernels -> 5 go: all in conv 0 (norms 1..32)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # input untouched
    assert set(masks) == {"0.weight"}
    kern = masks["0.weight"].all(dim=(2, 3))
    # the 5 smallest norms of conv 0: (o, i) = (0, 0), (0, 1), (1, 0), (1, 1), (2, 0)
    assert kern.nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0]]
    assert (pruned[0].weight[masks["0.weight"]] == 0).all() and (pruned[0].weight[~masks["0.weight"]] != 0).all()
    x = torch.randn(1, 2, 8, 8)
    dense = count_macs(pruned, x)
    sparse = count_macs(pruned, x, masks=masks)
    assert dense - sparse == 5 * 9 * 8 * 8  # 5 kernels x 9 taps x 8x8 output positions
    _, m2 = prune_kernels(m, 0.5)  # 10 go: the 8 of conv 0 and the 2 smallest of conv 1
    assert int(m2["0.weight"].all(dim=(2, 3)).sum()) == 8 and int(m2["2.weight"].all(dim=(2, 3)).sum()) == 2
    with pytest.raises(NetgrowValueError, match="ratio"):
        prune_kernels(m, 1.0)
    with pytest.raises(NetgrowValueError, match="no nn.Conv2d"):
        prune_kernels(nn.Linear(2, 2), 0.5)


@pytest.mark.slow
def test_cumulative_kernel_pruning_holds_the_kernels_at_zero_through_the_next_stage(tmp_path):
    from test_strategies import config, run, stage_files

    cfg, train, test = config("cumulative", data={"schedule": [4, 7, 10]}, train={"epochs": 1},
                              cumulative={"archs": ["vgg11", "vgg11", "vgg13"], "widths": 0.0625, "epochs": 1,
                                          "prune": [0.5, 0.0], "prune_mode": "kernel"})
    summary = run(cfg, train, test, tmp_path)
    _, m0 = stage_files(tmp_path, 0)
    _, m1 = stage_files(tmp_path, 1)
    _, masks0 = prune_kernels(m0, 0.5)
    total = sum(int(v.sum()) for v in masks0.values())
    s1 = summary["stages"][1]
    assert s1["pruned_kernels"] == total and s1["masked_entries"] == total
    p1 = dict(m1.named_parameters())
    for name, mask in masks0.items():  # trained through stage 1, still exactly zero
        assert (p1[name].detach()[mask] == 0).all(), name
    assert s1["macs_per_sample_dense"] - s1["macs_per_sample_masked"] > 0
    assert s1["params_nonzero"] == s1["params"] - total
    # stage 2 (no pruning before it) trains every weight again: no masks
    assert "masked_entries" not in summary["stages"][2]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {0, 1, 2}


def test_zero_mask_readings_all_zeros_vs_surround_taps():
    from netgrow.strategies.growth import zero_masks

    conv = nn.Conv2d(2, 2, 3)
    with torch.no_grad():  # an identity kernel as Net2DeeperNet inserts it
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = conv.weight[1, 1, 1, 1] = 1.0
    m = nn.Sequential(conv)
    every = zero_masks(m, {"0.weight"})["0.weight"]
    surround = zero_masks(m, {"0.weight"}, surround_only=True)["0.weight"]
    assert int(every.sum()) == 4 * 9 - 2  # all zeros: off-diagonal kernels whole + the diagonals' surround
    assert int(surround.sum()) == 4 * 8  # the 8 surround taps of each of the 4 kernels
    assert not surround[:, :, 1, 1].any() and every[0, 1, 1, 1] and every[1, 0, 1, 1]

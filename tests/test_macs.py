"""MAC counter: hand-computed values, conventions, masks, and agreement with ptflops on VGG and ResNet."""

from __future__ import annotations

import copy
import io
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.train.macs import FUNCTIONAL, count_macs

# ------------------------------------------------------------------ reference models (CIFAR-style)

VGG_CFG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def local_vgg(name: str, num_classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = []
    c = 3
    for v in VGG_CFG[name]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(nn.Sequential(*layers), nn.Flatten(), nn.Linear(512, num_classes))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class LocalResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, c = [], 16
        for i, w in enumerate((16, 32, 64)):
            for j in range(n):
                blocks.append(BasicBlock(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(self.pool(out).flatten(1))


def build(source: str, name: str) -> nn.Module:
    if source == "local":
        return local_vgg(name) if name.startswith("vgg") else LocalResNet(int(name[6:]))
    models = pytest.importorskip("netgrow.models")
    if not hasattr(models, "create"):
        pytest.skip("netgrow.models.create is not written yet")
    return models.create(name, num_classes=10, width=1.0, in_channels=3, input_size=32)


def ptflops_conv_linear(model: nn.Module, x: torch.Tensor, strip_bias: bool) -> dict[str, float]:
    """ptflops' per-module MACs (per sample) of every Conv/Linear module."""
    from ptflops.pytorch_engine import add_flops_counting_methods

    m = copy.deepcopy(model).eval()
    if strip_bias:  # ptflops adds one MAC per output element for a bias; we count none
        for mod in m.modules():
            if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)) and mod.bias is not None:
                mod.bias = None
    add_flops_counting_methods(m)
    m.start_flops_count(ost=io.StringIO(), verbose=False, ignore_list=[])
    with torch.no_grad():
        m(x)
    out = {
        name: mod.__flops__ / m.__batch_counter__
        for name, mod in m.named_modules()
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear))
    }
    m.stop_flops_count()
    return out


# ------------------------------------------------------------------ agreement with ptflops

def expected_conv_linear_macs(name: str) -> int:
    """Per-sample conv+linear MACs at 32x32, 10 classes, from the layer arithmetic alone."""
    if name.startswith("vgg"):
        size, cin, total = 32, 3, 0
        for v in VGG_CFG[name]:
            if v == "M":
                size //= 2
            else:
                total += size * size * v * cin * 9  # outputs x in_channels x 3x3
                cin = v
        return total + 512 * 10
    n = (int(name[6:]) - 2) // 6
    total, cin, size = 32 * 32 * 16 * 3 * 9, 16, 32
    for i, w in enumerate((16, 32, 64)):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            size //= stride
            total += size * size * w * cin * 9 + size * size * w * w * 9  # conv1 + conv2
            if stride != 1 or cin != w:
                total += size * size * w * cin  # 1x1 shortcut conv
            cin = w
    return total + 64 * 10


def test_reference_totals() -> None:
    assert expected_conv_linear_macs("vgg11") == 152_769_536
    assert expected_conv_linear_macs("vgg19") == 398_136_320
    assert expected_conv_linear_macs("resnet20") == 40_813_184
    assert expected_conv_linear_macs("resnet56") == 125_747_840


@pytest.mark.parametrize("source", ["local", "netgrow"])
@pytest.mark.parametrize("name", ["vgg11", "vgg19", "resnet20", "resnet56"])
def test_conv_and_linear_macs_equal_ptflops_per_module(source: str, name: str) -> None:
    torch.manual_seed(0)
    model = build(source, name)
    x = torch.randn(2, 3, 32, 32)
    ours = count_macs(model, x, by_module=True)
    theirs = ptflops_conv_linear(model, x, strip_bias=True)
    assert len(theirs) >= (8 if name.startswith("vgg") else 19)
    for module_name, macs in theirs.items():
        assert ours[module_name] == macs, module_name
    conv_linear_total = sum(theirs.values())
    assert conv_linear_total == sum(ours[n] for n in theirs)
    if source == "local":
        assert conv_linear_total == expected_conv_linear_macs(name)
    # the whole count adds BN, pooling and residual adds on top of conv+linear, nothing else
    assert count_macs(model, x) > conv_linear_total


def test_ptflops_bias_convention_differs_by_exactly_one_mac_per_output_element() -> None:
    model = local_vgg("vgg11")
    x = torch.randn(1, 3, 32, 32)
    ours = count_macs(model, x, by_module=True)
    with_bias = ptflops_conv_linear(model, x, strip_bias=False)
    # first conv: 64 channels x 32 x 32 outputs; the classifier: 10 outputs
    assert with_bias["0.0"] - ours["0.0"] == 64 * 32 * 32
    assert with_bias["2"] - ours["2"] == 10


# ------------------------------------------------------------------ hand-computed values


def test_hand_computed_conv_bn_pool_linear_net() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8x8x8 = 512 outputs x 3 in x 9 taps = 13824 (bias not counted)
        nn.BatchNorm2d(8),  # 512 elements x 1 = 512
        nn.ReLU(),  # 0
        nn.MaxPool2d(2),  # 8x4x4 = 128 outputs x 4 = 512
        nn.Conv2d(8, 16, 3, groups=2),  # 16x2x2 = 64 outputs x (8/2) x 9 = 2304
        nn.Flatten(),  # 0
        nn.Linear(64, 10),  # 640
    )
    x = torch.randn(3, 3, 8, 8)
    per = count_macs(net, x, by_module=True)
    assert per == {"0": 13824, "1": 512, "2": 0, "3": 512, "4": 2304, "5": 0, "6": 640}
    assert count_macs(net, x) == 13824 + 512 + 512 + 2304 + 640 == 17792


def test_hand_computed_conv1d_linear_on_sequences_layernorm_adaptive_pool() -> None:
    conv1d = nn.Conv1d(2, 4, 5, stride=2)  # length 20 -> 8; 4x8 = 32 outputs x 2 x 5 = 320
    assert count_macs(conv1d, torch.randn(2, 2, 20)) == 320
    lin = nn.Linear(6, 5)  # applied to 7 positions: 7 x 6 x 5 = 210
    assert count_macs(lin, torch.randn(4, 7, 6)) == 210
    ln = nn.LayerNorm(6)  # 3 per element: 3 x 42 = 126
    assert count_macs(ln, torch.randn(4, 7, 6)) == 126
    # adaptive windows for 5 -> 3: [0,2) [1,4) [3,5) = 2 + 3 + 2 = 7 per dim; 7 x 7 x 2 channels = 98
    assert count_macs(nn.AdaptiveAvgPool2d(3), torch.randn(2, 2, 5, 5)) == 98
    assert count_macs(nn.AdaptiveMaxPool2d(3), torch.randn(2, 2, 5, 5)) == 98


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.conv(x)))
        out = out + x  # functional add: 4x4x4 = 64
        out = F.avg_pool2d(out, 4)  # 4 outputs x 16 = 64
        return self.fc(out.flatten(1))


def test_functional_ops_are_counted_in_their_own_bucket() -> None:
    per = count_macs(Residual(), torch.randn(3, 4, 4, 4), by_module=True)
    assert per == {"conv": 16 * 4 * 4 * 9, "bn": 64, "fc": 12, FUNCTIONAL: 64 + 64}
    assert count_macs(Residual(), torch.randn(3, 4, 4, 4)) == 2304 + 64 + 12 + 128


def test_functional_linear_conv_and_matmul() -> None:
    class Fn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, 3, 3, 3))
            self.v = nn.Parameter(torch.randn(7, 5 * 2 * 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.conv2d(x, self.w)  # 5x2x2 = 20 outputs x 27 = 540
            y = F.linear(y.flatten(1), self.v)  # 20 x 7 = 140
            return y @ torch.ones(7, 2, dtype=y.dtype)  # 2 outputs x 7 = 14

    assert count_macs(Fn(), torch.randn(2, 3, 4, 4), by_module=True) == {FUNCTIONAL: 540 + 140 + 14}


# ------------------------------------------------------------------ masks (zero-mask training)


def test_masked_zero_weights_are_not_counted() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(48, 4))
    x = torch.randn(2, 2, 4, 4)
    dense = count_macs(net, x, by_module=True)
    assert dense["0"] == 54 * 16 and dense["2"] == 48 * 4
    w = net[0].weight.data.view(-1)
    w[:10] = 0.0
    mask = torch.zeros(54, dtype=torch.bool)
    mask[:14] = True  # 10 masked zeros + 4 masked entries that are not zero (still counted)
    w[20:25] = 0.0  # zero but not masked: still counted
    masks = {"0.weight": mask.view(3, 2, 3, 3)}
    per = count_macs(net, x, by_module=True, masks=masks)
    assert per["0"] == (54 - 10) * 16  # each weight is used at 16 output positions
    assert per["2"] == 48 * 4
    assert count_macs(net, x, masks=masks) == (54 - 10) * 16 + 48 * 4


def test_masked_linear_on_sequence_subtracts_every_position() -> None:
    lin = nn.Linear(5, 4, bias=False)
    with torch.no_grad():
        lin.weight[0, :4] = 0.0
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[0, :] = True
    assert count_macs(lin, torch.randn(2, 3, 5), masks={"weight": mask}) == (20 - 4) * 3


def test_net2net_identity_kernel_with_zero_mask_counts_only_the_centre_taps() -> None:
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(4):
            conv.weight[c, c, 1, 1] = 1.0
    x = torch.randn(1, 4, 4, 4)
    assert count_macs(conv, x) == 4 * 4 * 9 * 16
    assert count_macs(conv, x, masks={"weight": conv.weight == 0}) == 4 * 16


def test_bad_masks_are_refused_with_the_name_and_fix() -> None:
    net = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(NetgrowValueError, match=r"'1\.weight', which is not a parameter.*named_parameters"):
        count_macs(net, torch.randn(1, 3), masks={"1.weight": torch.zeros(2, 3, dtype=torch.bool)})
    with pytest.raises(NetgrowValueError, match=r"mask for '0\.weight' has shape \(3, 2\).*\(2, 3\)"):
        count_macs(net, torch.randn(1, 3), masks={"0.weight": torch.zeros(3, 2, dtype=torch.bool)})


# ------------------------------------------------------------------ behaviour and errors


def test_model_state_and_flags_are_left_untouched() -> None:
    torch.manual_seed(0)
    model = LocalResNet(20)
    model.train()
    model.layers[1].eval()  # a mixed state must be restored per submodule
    flags = {n: m.training for n, m in model.named_modules()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, torch.randn(2, 3, 32, 32))
    assert {n: m.training for n, m in model.named_modules()} == flags
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_per_sample_count_does_not_depend_on_batch_size() -> None:
    model = local_vgg("vgg11")
    assert count_macs(model, torch.randn(1, 3, 32, 32)) == count_macs(model, torch.randn(3, 3, 32, 32))


def test_work_that_does_not_scale_with_the_batch_is_reported() -> None:
    class ParamOp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * (self.scale * 2.0)  # scale * 2.0: 3 MACs once per batch; x * (...): 3 per sample

    with pytest.raises(NetgrowValueError, match=r"'<functional>' did 9 MACs on a batch of 2.*batch of 1"):
        count_macs(ParamOp(), torch.randn(2, 3))
    assert count_macs(ParamOp(), torch.randn(1, 3)) == 3 + 3


def test_bad_example_input_is_refused() -> None:
    with pytest.raises(NetgrowTypeError, match="example_input must be a torch.Tensor"):
        count_macs(nn.Linear(2, 2), [1.0, 2.0])
    with pytest.raises(NetgrowValueError, match="needs a batch dimension"):
        count_macs(nn.Linear(1, 1), torch.tensor(1.0))


def test_unknown_leaf_module_with_parameters_warns_and_counts_its_tensor_ops(caplog: pytest.LogCaptureFixture) -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.w

    with caplog.at_level(logging.WARNING, logger="netgrow.train.macs"):
        assert count_macs(nn.Sequential(Scale()), torch.randn(2, 4), by_module=True) == {FUNCTIONAL: 4}
    assert "no rule for Scale (module '0')" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_counts_on_gpu_equal_counts_on_cpu() -> None:
    model = LocalResNet(20)
    x = torch.randn(2, 3, 32, 32)
    assert count_macs(model.cuda(), x) == count_macs(model.cpu(), x)

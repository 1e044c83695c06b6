"""Seeded random architectures for property tests of the growth ops.

``random_arch(kind, seed)`` builds a small, fx-traceable model of one family with random depth, widths,
kernel sizes and options, puts non-trivial statistics into every BatchNorm (a few train-mode forwards on
random data plus random affine parameters) and returns it in eval mode together with an example input.
The same (kind, seed, dtype) always gives the same model and input; the global RNG is left untouched.

    >>> model, x = random_arch("resnet", seed=3)
    >>> model(x).shape[0] == x.shape[0]
    True
"""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

ARCH_KINDS: tuple[str, ...] = ("mlp", "vgg", "resnet", "densenet", "inception", "dwsep_se", "conv1d")

_BATCH = 4


def _act(rng: random.Random) -> nn.Module:
    # idempotent activations only, so deepen tests can insert identity layers after any of them
    return rng.choice([nn.ReLU, nn.ReLU, nn.ReLU6, nn.Hardtanh])()


# ----------------------------------------------------------------------------------------------------- mlp
class MLP(nn.Module):
    """Linear -> [BatchNorm1d] -> activation -> [Dropout], repeated; a Linear classifier."""

    def __init__(self, rng: random.Random):
        super().__init__()
        self.in_features = rng.randint(4, 12)
        layers: list[nn.Module] = []
        width = self.in_features
        use_bn = rng.random() < 0.6
        for _ in range(rng.randint(1, 3)):
            out = rng.randint(3, 12)
            layers.append(nn.Linear(width, out))
            if use_bn:
                layers.append(nn.BatchNorm1d(out))
            layers.append(_act(rng))
            if rng.random() < 0.3:
                layers.append(nn.Dropout(0.1))
            width = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, rng.randint(2, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ----------------------------------------------------------------------------------------------------- vgg
class VGGLike(nn.Module):
    """Conv-BN-activation stacks with max pooling, flatten, a Linear head (one hidden Linear at times)."""

    def __init__(self, rng: random.Random):
        super().__init__()
        self.in_channels = rng.choice([1, 3])
        self.size = rng.choice([8, 12])
        layers: list[nn.Module] = []
        c, size = self.in_channels, self.size
        for stage in range(rng.randint(1, 3)):
            for _ in range(rng.randint(1, 2)):
                out = rng.randint(3, 10)
                k = rng.choice([1, 3])
                layers += [nn.Conv2d(c, out, k, padding=k // 2, bias=rng.random() < 0.5), nn.BatchNorm2d(out), _act(rng)]
                c = out
            if size >= 4 and stage < 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        feat = c * size * size
        if rng.random() < 0.5:
            hidden = rng.randint(4, 16)
            head += [nn.Linear(feat, hidden), _act(rng)]
            if rng.random() < 0.5:
                head.append(nn.Dropout(0.2))
            feat = hidden
        head.append(nn.Linear(feat, rng.randint(2, 6)))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# -------------------------------------------------------------------------------------------------- resnet
class BasicBlock(nn.Module):
    """conv-bn-act-conv-bn + shortcut (1x1 conv + BN projection when shape changes), act after the add."""

    def __init__(self, c_in: int, c_out: int, stride: int, rng: random.Random):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = nn.ReLU()
        if stride != 1 or c_in != c_out or rng.random() < 0.3:
            self.shortcut: nn.Module = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNetLike(nn.Module):
    def __init__(self, rng: random.Random):
        super().__init__()
        self.in_channels = 3
        self.size = 8
        c = rng.randint(3, 8)
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        blocks = []
        for _ in range(rng.randint(1, 3)):
            out = rng.choice([c, rng.randint(3, 10)])
            stride = rng.choice([1, 1, 2])
            blocks.append(BasicBlock(c, out, stride, rng))
            c = out
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, rng.randint(2, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


# ------------------------------------------------------------------------------------------------ densenet
class DenseLayer(nn.Module):
    """BN-act-conv producing ``growth`` channels, concatenated to its input."""

    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(c_in, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(self.act(self.bn(x)))], 1)


class DenseNetLike(nn.Module):
    def __init__(self, rng: random.Random):
        super().__init__()
        self.in_channels = 3
        self.size = 8
        c = rng.randint(3, 8)
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        for block in range(rng.randint(1, 2)):
            for _ in range(rng.randint(1, 3)):
                growth = rng.randint(2, 5)
                layers.append(DenseLayer(c, growth))
                c += growth
            if block == 0:
                out = rng.randint(3, 8)
                layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, out, 1, bias=False), nn.AvgPool2d(2)]
                c = out
        self.features = nn.Sequential(*layers)
        self.norm = nn.BatchNorm2d(c)
        self.act = nn.ReLU()
        self.fc = nn.Linear(c, rng.randint(2, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(self.features(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------------------------- inception
class InceptionBlock(nn.Module):
    """Parallel 1x1, 1x1->3x3 and pool->1x1 branches, concatenated along channels."""

    def __init__(self, c_in: int, rng: random.Random):
        super().__init__()
        b1, b2r, b2, b3 = (rng.randint(2, 6) for _ in range(4))
        self.b1 = nn.Sequential(nn.Conv2d(c_in, b1, 1), nn.BatchNorm2d(b1), nn.ReLU())
        self.b2 = nn.Sequential(
            nn.Conv2d(c_in, b2r, 1), nn.BatchNorm2d(b2r), nn.ReLU(), nn.Conv2d(b2r, b2, 3, padding=1), nn.BatchNorm2d(b2), nn.ReLU()
        )
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(c_in, b3, 1), nn.BatchNorm2d(b3), nn.ReLU())
        self.out_channels = b1 + b2 + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x)], dim=1)


class InceptionLike(nn.Module):
    def __init__(self, rng: random.Random):
        super().__init__()
        self.in_channels = 3
        self.size = 8
        c = rng.randint(3, 8)
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        blocks = []
        for _ in range(rng.randint(1, 2)):
            block = InceptionBlock(c, rng)
            blocks.append(block)
            c = block.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d((2, 2))
        self.fc = nn.Linear(c * 4, rng.randint(2, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(x.flatten(1))


# ------------------------------------------------------------------------------------------------ dwsep_se
class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 reduce -> act -> 1x1 expand -> sigmoid, multiplied onto the input."""

    def __init__(self, c: int, reduced: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(c, reduced, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(reduced, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.expand(self.act(self.reduce(self.pool(x)))))


class DWSepBlock(nn.Module):
    """Depthwise 3x3 (groups = channels) -> BN -> act -> pointwise 1x1 -> BN -> act -> [SE]."""

    def __init__(self, c_in: int, c_out: int, rng: random.Random):
        super().__init__()
        self.dw = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=rng.random() < 0.5)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.act1 = nn.ReLU()
        self.pw = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = nn.ReLU()
        self.se = SqueezeExcite(c_out, rng.randint(2, 4)) if rng.random() < 0.8 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.dw(x)))
        return self.se(self.act2(self.bn2(self.pw(x))))


class DWSepSE(nn.Module):
    def __init__(self, rng: random.Random):
        super().__init__()
        self.in_channels = 3
        self.size = 8
        c = rng.randint(3, 8)
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        blocks = []
        for _ in range(rng.randint(1, 3)):
            out = rng.randint(3, 10)
            blocks.append(DWSepBlock(c, out, rng))
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, rng.randint(2, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.blocks(self.stem(x)))))


# -------------------------------------------------------------------------------------------------- conv1d
class Conv1dNet(nn.Module):
    """Conv1d-BN1d-activation stacks with pooling, flatten (channel c -> a block of L features), Linear."""

    def __init__(self, rng: random.Random):
        super().__init__()
        self.in_channels = rng.choice([1, 2])
        self.length = rng.choice([16, 24])
        layers: list[nn.Module] = []
        c, length = self.in_channels, self.length
        for _ in range(rng.randint(1, 3)):
            out = rng.randint(3, 10)
            k = rng.choice([3, 5])
            layers += [nn.Conv1d(c, out, k, padding=k // 2), nn.BatchNorm1d(out), _act(rng)]
            if rng.random() < 0.6:
                layers.append(rng.choice([nn.MaxPool1d, nn.AvgPool1d])(2))
                length //= 2
            c = out
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c * length, rng.randint(2, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.features(x)))


# --------------------------------------------------------------------------------------------- entry point
_BUILDERS = {
    "mlp": MLP,
    "vgg": VGGLike,
    "resnet": ResNetLike,
    "densenet": DenseNetLike,
    "inception": InceptionLike,
    "dwsep_se": DWSepSE,
    "conv1d": Conv1dNet,
}


def _input_shape(model: nn.Module, batch: int) -> tuple[int, ...]:
    if isinstance(model, MLP):
        return (batch, model.in_features)
    if isinstance(model, Conv1dNet):
        return (batch, model.in_channels, model.length)
    return (batch, model.in_channels, model.size, model.size)  # type: ignore[attr-defined]


def _randomise_norms(model: nn.Module, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Give every BatchNorm random affine parameters and running statistics far from (0, 1)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.5  # a few forwards move the statistics well away from their init
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn((16,) + shape[1:], dtype=dtype) * 2.0 + 0.5)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    model.eval()


def random_arch(kind: str, seed: int, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, torch.Tensor]:
    """A random model of family ``kind`` (one of ``ARCH_KINDS``) in eval mode, and an example input.

    Deterministic in (kind, seed, dtype); does not touch the global RNG state.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"unknown arch kind {kind!r}; use one of {ARCH_KINDS}")
    rng = random.Random(f"{kind}:{seed}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(rng.randrange(2**31))
        model = _BUILDERS[kind](rng).to(dtype)
        shape = _input_shape(model, _BATCH)
        _randomise_norms(model, shape, dtype)
        x = torch.randn(shape, dtype=dtype)
    return model, x


def fresh_input(x: torch.Tensor, seed: int = 12345, batch: int | None = None) -> torch.Tensor:
    """A new random input of the same per-sample shape and dtype as ``x`` (not the example input)."""
    g = torch.Generator().manual_seed(seed)
    shape = ((batch or x.shape[0]),) + tuple(x.shape[1:])
    return torch.randn(shape, generator=g, dtype=x.dtype).to(x.device)


@pytest.fixture
def single_thread():
    """One intra-op thread for the test: on a shared machine, thread hand-offs cost tiny models ~100x.

    Use it with ``pytestmark = pytest.mark.usefixtures("single_thread")`` after importing it.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


__all__ = ["ARCH_KINDS", "random_arch", "fresh_input", "single_thread"]

"""Model families: forward shapes per input size, published parameter counts, gradients, registry, specs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archs import single_thread  # noqa: F401 (fixture)
from netgrow.errors import NetgrowValueError
from netgrow.models import architecture, create, list_models, output_layer
from netgrow.spec import get_spec

pytestmark = pytest.mark.usefixtures("single_thread")

FAMILIES_2D = ["vgg11", "vgg13", "vgg16", "vgg19", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "mlp"]
# (in_channels, input_size, input tensor shape without batch)
IMAGE_INPUTS = [(1, 28, (1, 28, 28)), (3, 32, (3, 32, 32)), (3, 64, (3, 64, 64))]
SEQ_INPUTS = [(1, [40], (1, 40)), (2, [40], (2, 40))]  # MNIST-1D: length 40, 1 channel


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_list_models_names_every_family_member():
    assert list_models() == [
        "cnn1d", "gpt", "mlp", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "vgg11", "vgg13", "vgg16", "vgg19",
    ]  # fmt: skip


@pytest.mark.parametrize("name", FAMILIES_2D)
@pytest.mark.parametrize("in_channels,size,shape", IMAGE_INPUTS)
def test_forward_shape_on_images(name, in_channels, size, shape):
    torch.manual_seed(0)
    model = create(name, num_classes=7, width=0.25, in_channels=in_channels, input_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["mlp", "cnn1d"])
@pytest.mark.parametrize("in_channels,size,shape", SEQ_INPUTS)
def test_forward_shape_on_sequences(name, in_channels, size, shape):
    model = create(name, num_classes=10, in_channels=in_channels, input_size=size).eval()
    with torch.no_grad():
        assert model(torch.randn(3, *shape)).shape == (3, 10)


def test_mlp_accepts_flat_sequences_and_counts_inputs():
    model = create("mlp", in_channels=1, input_size=[40]).eval()
    assert model.features[1].in_features == 40
    assert model(torch.randn(2, 40)).shape == (2, 10)  # (N, L) without a channel dim
    assert create("mlp", in_channels=1, input_size=28).features[1].in_features == 784


def test_cnn1d_int_input_size_is_a_length():
    model = create("cnn1d", in_channels=1, input_size=40)
    assert model.classifier.in_features == 128 * 5  # 40 -> 20 -> 10 -> 5


@pytest.mark.parametrize("size,expected", [(28, 1), (32, 1), (64, 2)])
def test_vgg_pools_adapt_to_small_inputs(size, expected):
    # ceil-mode pools: 28 -> 14 -> 7 -> 4 -> 2 -> 1, 32 -> 1, 64 -> 2; then a global average pool
    model = create("vgg11", width=0.25, input_size=size).eval()
    with torch.no_grad():
        fmap = model.features(torch.randn(1, 3, size, size))
    assert fmap.shape[-2:] == (expected, expected)
    assert model.classifier.in_features == 128


# Reference: the CIFAR VGG of kuangliu/pytorch-cifar (Conv3x3 with bias + BN + ReLU, one Linear(512, 10));
# VGG16-BN 14,728,266 and VGG19-BN 20,040,522 parameters (~14.73M / ~20.04M, the counts usually quoted).
# ResNet: He et al. 2016 report 0.27M (ResNet-20) and 0.85M (ResNet-56) with option-A shortcuts
# (269,722 / 853,018); ours use option-B projections (+2,752 parameters: 1x1 convs 16->32, 32->64 + BN).
@pytest.mark.parametrize(
    "name,exact,published",
    [
        ("vgg16", 14_728_266, 14.73e6),
        ("vgg19", 20_040_522, 20.04e6),
        ("resnet20", 272_474, 0.27e6),
        ("resnet56", 855_770, 0.85e6),
    ],
)
def test_parameter_counts_match_published(name, exact, published):
    n = _count(create(name, num_classes=10, width=1.0, in_channels=3, input_size=32))
    assert n == exact
    assert abs(n - published) / published < 0.02


def test_width_multiplier_scales_channels():
    assert create("vgg11", width=0.5).features[0].out_channels == 32
    assert create("resnet20", width=2.0).layer3[0].conv1.out_channels == 128
    assert create("vgg11", width=0.001).features[0].out_channels == 1  # max(1, round(c * w))
    assert create("cnn1d", width=0.5).features[0].out_channels == 16


CLASSIFIERS = [n for n in list_models() if n != "gpt"]  # the GPT has its own tests (tests/test_gpt.py)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_parameter_gets_a_finite_gradient(name):
    torch.manual_seed(0)
    seq = name in ("cnn1d",)
    model = create(name, num_classes=5, width=0.25, in_channels=1 if seq else 3, input_size=40 if seq else 32)
    x = torch.randn(4, 1, 40) if seq else torch.randn(4, 3, 32, 32)
    loss = nn.functional.cross_entropy(model.train()(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_create_records_the_base_spec():
    model = create("resnet32", num_classes=4, width=0.5, in_channels=1, input_size=[28, 28])
    assert get_spec(model) == {
        "base": {"family": "resnet32", "kwargs": {"num_classes": 4, "width": 0.5, "in_channels": 1, "input_size": [28, 28]}},
        "log": [],
    }
    assert architecture(model) == "resnet32"


def test_output_layer_of_netgrow_and_user_models():
    for name in CLASSIFIERS:
        model = create(name, num_classes=3, width=0.25)
        assert output_layer(model) == "classifier"
        assert isinstance(model.get_submodule("classifier"), nn.Linear)
        assert model.classifier.out_features == 3

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
            self.drop = nn.Dropout(0.1)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return torch.flatten(self.head(self.drop(self.body(x))), 1)

    assert output_layer(Head()) == "head"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="vgg12"), "unknown model 'vgg12'.*vgg11"),
        (dict(name="vgg11", width=0.0), "width=0.0"),
        (dict(name="vgg11", num_classes=0), "num_classes=0"),
        (dict(name="vgg11", input_size=[32]), r"input_size=\[32\] does not describe a 2-D input"),
        (dict(name="cnn1d", input_size=[4, 4]), "1-D input"),
        (dict(name="resnet20", input_size=0), "input_size=0"),
    ],
)
def test_create_rejects_bad_arguments(kwargs, match):
    with pytest.raises(NetgrowValueError, match=match):
        create(**kwargs)


def test_architecture_of_a_user_model_is_an_error():
    with pytest.raises(NetgrowValueError, match="Linear is not a netgrow model.*netgrow.models.create"):
        architecture(nn.Linear(2, 2))

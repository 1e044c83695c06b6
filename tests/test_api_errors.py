"""API misuse gets netgrow's typed errors naming the argument, and the model is left untouched.

Also: corrupted and forged model files (checksums, declared sizes) are refused by ``netgrow.load``.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import netgrow
from netgrow.errors import CheckpointError, NetgrowTypeError, NetgrowValueError, VerificationError
from netgrow.models import create
from netgrow.train import safe_io


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))


GOOD = (2, 3, 6, 6)

OPS = {
    "widen": lambda m, x: netgrow.widen(m, 2.0, example_input=x),
    "deepen": lambda m, x: netgrow.deepen(m, "2", example_input=x),
    "prune": lambda m, x: netgrow.prune(m, 0.5, example_input=x),
    "expand_classes": lambda m, x: netgrow.expand_classes(m, 6, example_input=x),
    "count_macs": lambda m, x: netgrow.count_macs(m, x),
    "channel_groups": lambda m, x: netgrow.channel_groups(m, x),
}

BAD_INPUTS = {
    # name: (input, error type, words the message must contain)
    "wrong spatial size": (lambda: torch.randn(2, 3, 8, 8), NetgrowValueError, ["cannot run", "(2, 3, 8, 8)"]),
    "meta device": (lambda: torch.randn(*GOOD, device="meta"), NetgrowValueError, ["'meta' device"]),
    "NaN values": (lambda: torch.full(GOOD, float("nan")), NetgrowValueError, ["NaN/inf", "216"]),
    "float64 for a float32 model": (lambda: torch.randn(*GOOD, dtype=torch.float64), NetgrowTypeError, ["float64"]),
    "no batch dimension": (lambda: torch.tensor(1.0), NetgrowValueError, ["batch dimension"]),
    "not a tensor": (lambda: [[1.0, 2.0]], NetgrowTypeError, ["must be a torch.Tensor"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("op", sorted(OPS))
def test_bad_example_input_is_a_named_netgrow_error_and_the_model_is_untouched(op, case):
    make, error, words = BAD_INPUTS[case]
    model = small_net()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error) as info:
        OPS[op](model, make())
    message = str(info.value)
    assert not isinstance(info.value, VerificationError)  # the user's input, not netgrow, is at fault
    assert message.startswith(f"{op}: ") and "example_input" in message, message
    for word in words:
        assert word in message, message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())


def test_good_input_still_works_and_the_check_draws_no_random_numbers():
    model, x = small_net(), torch.randn(*GOOD)
    state = torch.get_rng_state()
    assert netgrow.count_macs(model, x) > 0
    assert torch.equal(state, torch.get_rng_state())


def test_save_of_a_non_module_is_a_type_error(tmp_path):
    with pytest.raises(NetgrowTypeError, match="must be a torch.nn.Module, got str"):
        netgrow.save("model.pt", tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


# ----------------------------------------------------------------------------- model files


@pytest.fixture
def saved_mlp(tmp_path):
    torch.manual_seed(0)
    model = create("mlp", num_classes=10, width=0.25, in_channels=1, input_size=8)
    model = netgrow.widen(model, {"features.1": 64}, example_input=torch.randn(2, 1, 8, 8))
    path = tmp_path / "w.safetensors"
    netgrow.save(model, path)
    return model, path


def test_load_detects_a_flipped_byte_and_names_the_tensor(saved_mlp, tmp_path):
    _, path = saved_mlp
    data = bytearray(path.read_bytes())
    _, _, start, end = safe_io._tensor_spans(bytes(data))["features.4.weight"]
    data[(start + end) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="tensor 'features.4.weight' does not match its checksum"):
        netgrow.load(path)


def test_load_detects_an_edited_header(saved_mlp):
    _, path = saved_mlp
    data = path.read_bytes()
    edited = data.replace(b'\\"noise\\": 0.0', b'\\"noise\\": 0.5')
    assert edited != data and len(edited) == len(data)
    path.write_bytes(edited)
    with pytest.raises(CheckpointError, match="JSON header does not match its checksum"):
        netgrow.load(path)


def test_old_files_without_checksums_load_with_a_warning(saved_mlp, tmp_path, caplog):
    """Format version 1 (before checksums): read unverified, with a warning naming the file."""
    model, path = saved_mlp
    tensors, meta = safe_io.read(path)
    meta["format_version"] = 1
    from safetensors.torch import save as st_save

    old = tmp_path / "old.safetensors"
    old.write_bytes(st_save({k: v.contiguous() for k, v in tensors.items()}, metadata={"netgrow": json.dumps(meta)}))
    with caplog.at_level("WARNING"):
        back = netgrow.load(old)
    assert "without checksums" in caplog.text and str(old) in caplog.text
    assert torch.equal(back.features[1].weight, model.features[1].weight)
    # a current-version file whose checksums were stripped is refused
    meta["format_version"] = safe_io.FORMAT_VERSION
    old.write_bytes(st_save({k: v.contiguous() for k, v in tensors.items()}, metadata={"netgrow": json.dumps(meta)}))
    with pytest.raises(CheckpointError, match="checksums are missing"):
        netgrow.load(old)


def forge(path, tmp_path, edit) -> str:
    tensors, meta = safe_io.read(path)
    meta.pop("format_version")
    edit(meta["spec"])
    forged = tmp_path / "forged.safetensors"
    safe_io.write_atomic(forged, tensors, meta)  # valid checksums: a forger can recompute them
    return str(forged)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: s["log"][0]["widths"].update({"features.1": 10**8}), "declares size 100000000 for 'features.1'"),
        (lambda s: s["base"]["kwargs"].update({"width": 1e6}), "the base model 'mlp'"),
        (lambda s: s["log"][0].update({"input_shape": [10**6, 1, 100, 100]}), "example input of shape"),
    ],
)
def test_spec_sizes_are_checked_before_anything_is_allocated(saved_mlp, tmp_path, edit, words):
    """A 30 KB file declaring widths of 1e8 is refused before the model is built (it would need > 4 GB)."""
    _, path = saved_mlp
    with pytest.raises(CheckpointError, match=words):
        netgrow.load(forge(path, tmp_path, edit))


def test_spec_size_check_allows_widths_removed_by_a_later_prune(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8)
    model = create("mlp", num_classes=10, width=0.25, in_channels=1, input_size=8)
    model = netgrow.widen(model, {"features.1": 128}, example_input=x)
    model = netgrow.prune(model, 0.75, example_input=x)
    netgrow.save(model, tmp_path / "p.safetensors")
    back = netgrow.load(tmp_path / "p.safetensors")
    assert torch.equal(back.eval()(x), model.eval()(x))


def test_count_macs_still_moves_the_example_to_the_models_device_and_takes_extra_arguments():
    class TwoArgs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x, scale):
            return self.fc(x) * scale

    assert netgrow.count_macs(TwoArgs(), (torch.randn(2, 4), 2.0)) == 4 * 3 + 3  # the Linear and the scaling
    with pytest.raises(NetgrowValueError, match="count_macs: example_input holds 8 NaN/inf"):
        netgrow.count_macs(TwoArgs(), (torch.full((2, 4), float("inf")), 2.0))

"""netgrow.save / netgrow.load: round trips with growth logs, and refusal of unsafe or damaged files."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import netgrow
from netgrow.errors import CheckpointError
from netgrow.ops import replay as replay_mod
from netgrow.ops.param_map import param_map, set_param_map, identity_map
from netgrow.spec import append_record, get_spec, set_base
from netgrow.train import safe_io
from netgrow.train.serialization import load, model_from_tensors, model_to_tensors, save


class SmallNet(nn.Module):
    """A user's own model class (not a netgrow family)."""

    def __init__(self, hidden: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


# A test-local growth op, registered in the replay dispatcher by the ``grow_op`` fixture, so the replay
# path is exercised before the real ops exist: it widens ``fc1``/``bn``/``fc2`` to ``record["hidden"]``.


def replay(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    new = SmallNet.__new__(type(model))
    nn.Module.__init__(new)
    h = record["hidden"]
    new.fc1, new.bn, new.fc2 = nn.Linear(4, h), nn.BatchNorm1d(h), nn.Linear(h, 2)
    new.to(dtype=model.fc1.weight.dtype)
    set_param_map(new, identity_map(new))  # any map; load must drop it
    return new


def widen_for_test(model: nn.Module, hidden: int) -> nn.Module:
    record = {"op": "test_widen", "input_shape": [2, 4], "input_dtype": "float32", "hidden": hidden}
    new = replay(model, record)
    torch.manual_seed(hidden)
    for p in new.parameters():
        nn.init.normal_(p)
    with torch.no_grad():
        new.bn.running_mean.normal_()
        new.bn.running_var.uniform_(0.5, 2.0)
    spec = get_spec(model)
    netgrow.spec.set_spec(new, spec)
    append_record(new, record)
    return new


@pytest.fixture
def grow_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(replay_mod.OP_MODULES, "test_widen", __name__)


def trained_like(model: nn.Module) -> nn.Module:
    """Give BN non-default running statistics so buffers are part of the round trip."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 4))
    return model.eval()


def assert_same_model(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


# ------------------------------------------------------------------ round trips


def test_user_model_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = trained_like(SmallNet())
    save(model, tmp_path / "m.safetensors")
    base = SmallNet()
    base_before = {k: v.clone() for k, v in base.state_dict().items()}
    back = netgrow.load(tmp_path / "m.safetensors", base=base)
    assert type(back) is SmallNet and back is not base
    assert_same_model(model, back, torch.randn(5, 4))
    assert all(torch.equal(base_before[k], v) for k, v in base.state_dict().items())  # base untouched
    assert get_spec(back) == {"base": None, "log": []}


def test_user_model_with_growth_log_round_trip(tmp_path: Path, grow_op: None) -> None:
    torch.manual_seed(0)
    grown = widen_for_test(widen_for_test(SmallNet(3), 5), 7)
    assert [r["hidden"] for r in get_spec(grown)["log"]] == [5, 7]
    save(grown, tmp_path / "g.safetensors")
    back = load(tmp_path / "g.safetensors", base=SmallNet(3))
    assert back.fc1.out_features == 7
    assert_same_model(grown, back, torch.randn(5, 4))
    assert get_spec(back) == get_spec(grown)
    assert param_map(back) is None


def test_netgrow_family_is_rebuilt_from_its_spec(tmp_path: Path, grow_op: None, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def create(name: str, **kwargs: Any) -> nn.Module:
        calls.append((name, kwargs))
        model = SmallNet(kwargs["hidden"])
        set_base(model, name, **kwargs)
        return model

    import netgrow.models

    monkeypatch.setattr(netgrow.models, "create", create, raising=False)
    model = create("smallnet", hidden=3)
    grown = widen_for_test(model, 6)
    save(grown, tmp_path / "f.safetensors")
    back = load(tmp_path / "f.safetensors")  # no base needed
    assert calls[-1] == ("smallnet", {"hidden": 3})
    assert_same_model(grown, back, torch.randn(3, 4))
    assert get_spec(back)["base"] == {"family": "smallnet", "kwargs": {"hidden": 3}}


def test_float64_and_tied_weights_survive(tmp_path: Path) -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)
            self.b.weight = self.a.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    torch.manual_seed(0)
    model = Tied().double()
    save(model, tmp_path / "t.safetensors")
    back = load(tmp_path / "t.safetensors", base=Tied())  # a float32 base: the saved dtype wins
    assert back.a.weight.dtype == torch.float64
    assert back.b.weight is back.a.weight
    assert_same_model(model, back, torch.randn(2, 3, dtype=torch.float64))


def test_model_tensors_with_prefix_inside_a_larger_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = trained_like(SmallNet())
    tensors, meta = model_to_tensors(model, prefix="model.")
    assert all(k.startswith("model.") for k in tensors) and meta["prefix"] == "model."
    extra = {"optim.0.exp_avg": torch.ones(3)}
    back = model_from_tensors({**tensors, **extra}, meta, base=SmallNet())
    assert_same_model(model, back, torch.randn(2, 4))
    # a trainer-style checkpoint (kind "checkpoint", model meta nested) is readable by netgrow.load
    safe_io.write_atomic(tmp_path / "last.safetensors", {**tensors, **extra}, {"kind": "checkpoint", "model": meta})
    assert_same_model(model, load(tmp_path / "last.safetensors", base=SmallNet()), torch.randn(2, 4))


# ------------------------------------------------------------------ rebuild errors


def test_user_model_without_base_asks_for_one(tmp_path: Path) -> None:
    save(SmallNet(), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"user model of class .*SmallNet.*pass base=MyModel\(\.\.\.\)"):
        load(tmp_path / "m.safetensors")


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path: Path) -> None:
    save(SmallNet(5), tmp_path / "m.safetensors")
    msg = r"shape mismatch for 'fc1\.weight': checkpoint has \(5, 4\), the rebuilt model has \(3, 4\)"
    with pytest.raises(CheckpointError, match=msg):
        load(tmp_path / "m.safetensors", base=SmallNet(3))


def test_different_architecture_lists_missing_and_unexpected_keys(tmp_path: Path) -> None:
    save(nn.Sequential(nn.Linear(4, 2)), tmp_path / "m.safetensors")
    msg = r"missing from the checkpoint \['fc1\.weight'.*unexpected in the checkpoint \['0\.(bias|weight)'"
    with pytest.raises(CheckpointError, match=msg):
        load(tmp_path / "m.safetensors", base=SmallNet())


def test_unknown_op_in_the_log_is_reported(tmp_path: Path) -> None:
    model = SmallNet()
    append_record(model, {"op": "teleport", "input_shape": [1, 4]})
    save(model, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"growth log entry 0 has unknown op 'teleport'"):
        load(tmp_path / "m.safetensors", base=SmallNet())


def test_family_that_cannot_be_built_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import netgrow.models

    def create(name: str, **kwargs: Any) -> nn.Module:
        raise ValueError(f"unknown model {name!r}")

    monkeypatch.setattr(netgrow.models, "create", create, raising=False)
    model = SmallNet()
    set_base(model, "nosuchnet", width=1.0)
    save(model, tmp_path / "m.safetensors")
    msg = r"cannot rebuild the netgrow model 'nosuchnet' with \{'width': 1\.0\}: unknown model"
    with pytest.raises(CheckpointError, match=msg):
        load(tmp_path / "m.safetensors")


# ------------------------------------------------------------------ unsafe and damaged files


class Evil:
    """Unpickling this creates ``path`` -- the stand-in for arbitrary code execution."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_the_evil_payload_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "sanity_marker"
    pickle.loads(pickle.dumps(Evil(marker))).close()
    assert marker.exists()  # so the refusal tests below would notice an unpickling load


@pytest.mark.parametrize("fmt", ["pickle", "pickle_protocol0", "torch_save"])
def test_pickle_checkpoint_is_refused_without_running_it(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    if fmt == "pickle":
        path.write_bytes(pickle.dumps({"model": Evil(marker)}))
    elif fmt == "pickle_protocol0":
        path.write_bytes(pickle.dumps({"model": Evil(marker)}, protocol=0))
    else:
        torch.save({"model": Evil(marker)}, path)
    with pytest.raises(CheckpointError, match=r"pickle|truncated or corrupted"):
        load(path, base=SmallNet())
    assert not marker.exists()


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save(SmallNet(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated or corrupted.*use an earlier checkpoint"):
        load(path, base=SmallNet())


def test_plain_safetensors_file_without_netgrow_metadata_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file(SmallNet().state_dict(), str(path))
    with pytest.raises(CheckpointError, match="not a netgrow checkpoint"):
        load(path, base=SmallNet())


def test_netgrow_file_without_a_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    safe_io.write_atomic(path, {"a": torch.zeros(1)}, {"kind": "metrics"})
    with pytest.raises(CheckpointError, match=r"kind 'metrics' without a model"):
        load(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nope.safetensors")


def test_saved_meta_is_plain_json(tmp_path: Path) -> None:
    model = SmallNet()
    append_record(model, {"op": "widen", "input_shape": [2, 4], "input_dtype": "float32", "widths": {"fc1": 6}})
    save(model, tmp_path / "m.safetensors")
    _, meta = safe_io.read(tmp_path / "m.safetensors")
    assert meta["kind"] == "model" and meta["class"].endswith("SmallNet")
    assert meta["spec"]["log"][0]["widths"] == {"fc1": 6}
    json.dumps(meta)


# ------------------------------------------------------------------ real growth ops (when they exist)

_HAS = {m: importlib.util.find_spec(f"netgrow.ops.{m}") is not None for m in ("widen", "deepen")}


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        return self.fc(self.pool(x).flatten(1))


def randomised(model: nn.Module) -> nn.Module:
    """Non-trivial weights and BN statistics everywhere (identity blocks included) before saving."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.uniform_(0.5, 1.5)
    return model


@pytest.mark.skipif(not _HAS["deepen"], reason="netgrow.ops.deepen is not written yet")
def test_user_model_grown_by_deepen_round_trip(tmp_path: Path) -> None:
    from netgrow.ops.deepen import deepen

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    grown = randomised(deepen(deepen(SmallCNN(), "act1", example_input=x), "act2", example_input=x))
    assert len(grown.state_dict()) > len(SmallCNN().state_dict())
    save(grown, tmp_path / "d.safetensors")
    back = load(tmp_path / "d.safetensors", base=SmallCNN())
    assert_same_model(grown, back, x)
    assert [r["op"] for r in get_spec(back)["log"]] == ["deepen", "deepen"]


@pytest.mark.skipif(not _HAS["widen"], reason="netgrow.ops.widen is not written yet")
def test_user_model_grown_by_widen_round_trip(tmp_path: Path) -> None:
    from netgrow.ops.widen import widen

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    grown = randomised(widen(SmallCNN(), 2.0, example_input=x, seed=0))
    assert grown.conv1.out_channels > 4
    save(grown, tmp_path / "w.safetensors")
    back = load(tmp_path / "w.safetensors", base=SmallCNN())
    assert_same_model(grown, back, x)
    assert get_spec(back) == get_spec(grown)


@pytest.mark.skipif(not (_HAS["widen"] and _HAS["deepen"]), reason="netgrow.ops.widen/deepen are not written yet")
def test_user_model_widened_and_deepened_round_trip(tmp_path: Path) -> None:
    from netgrow.ops.deepen import deepen
    from netgrow.ops.widen import widen

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    grown = randomised(deepen(widen(SmallCNN(), 2.0, example_input=x, seed=0), "act1", example_input=x))
    save(grown, tmp_path / "wd.safetensors")
    back = load(tmp_path / "wd.safetensors", base=SmallCNN())
    assert_same_model(grown, back, x)
    assert [r["op"] for r in get_spec(back)["log"]] == ["widen", "deepen"]


def _has_models() -> bool:
    return importlib.util.find_spec("netgrow.models.registry") is not None and _HAS["deepen"]


@pytest.mark.skipif(not _has_models(), reason="netgrow.models is not written yet")
@pytest.mark.parametrize("small,big", [("vgg11", "vgg13"), ("resnet20", "resnet32")])
def test_netgrow_family_grown_round_trip_without_base(tmp_path: Path, small: str, big: str) -> None:
    from netgrow.models import create
    from netgrow.models.grow import grow

    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    grown = randomised(grow(create(small, num_classes=10, width=0.25), big, example_input=x))
    save(grown, tmp_path / "g.safetensors")
    back = load(tmp_path / "g.safetensors")
    assert_same_model(grown, back, x)
    assert get_spec(back)["base"]["family"] == small and get_spec(back)["log"][0]["op"] == "grow"


@pytest.mark.skipif(not (_has_models() and _HAS["widen"]), reason="netgrow.models/widen are not written yet")
def test_netgrow_vgg_widened_round_trip_without_base(tmp_path: Path) -> None:
    from netgrow.models import create
    from netgrow.ops.widen import widen

    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    grown = randomised(widen(create("vgg11", num_classes=10, width=0.25), 2.0, example_input=x, seed=1))
    save(grown, tmp_path / "v.safetensors")
    assert_same_model(grown, load(tmp_path / "v.safetensors"), x)

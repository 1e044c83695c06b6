"""Trainer behaviour: schedules, optimizers, learning, stopping, freezing, masks, metrics, errors, progress."""

from __future__ import annotations

import copy
import io
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from netgrow.errors import ConfigError, DataError, NetgrowValueError, TrainingError
from netgrow.ops.param_map import DimMap, ParamSource
from netgrow.train import LRSchedule, Plateau, StageResult, Trainer, TrainConfig, build_optimizer, count_macs
from netgrow.train.progress import Progress
from netgrow.train.stopping import any_of


def blobs(n: int, seed: int, classes: int = 2, dim: int = 4) -> TensorDataset:
    """Linearly separable Gaussian blobs (class means 3 apart along distinct axes)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, dim, generator=g) * 0.5
    x[torch.arange(n), y % dim] += 3.0
    return TensorDataset(x, y)


def mlp(seed: int = 0, hidden: int = 16, classes: int = 2, dim: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=32, lr=0.05, schedule="constant", seed=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def data():
    return blobs(256, 0), blobs(128, 1)


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"optimizer": "adam"}, "unknown optimizer 'adam'; allowed values: ['sgd', 'rmsprop', 'adamw']"),
        ({"schedule": "linear"}, "unknown schedule 'linear'; allowed values: ['constant', 'step', 'cosine', 'wsd', 'plateau']"),
        ({"amp": "fp8"}, "unknown amp 'fp8'"),
        ({"lr": 0.0}, "lr=0.0 is invalid"),
        ({"nesterov": True, "momentum": 0.0}, "nesterov=True is invalid"),
        ({"batch_size": 0}, "batch_size=0 is invalid"),
        ({"epochs": None, "steps": None}, "a budget is needed"),
        ({"label_smoothing": 1.0}, "label_smoothing=1.0 is invalid"),
        ({"device": "tpu"}, "device='tpu' is invalid"),
    ],
)
def test_config_rejects_bad_values(kwargs, needle):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kwargs)
    assert needle in str(e.value)


def test_config_defaults_and_from_dict():
    c = TrainConfig()
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.schedule, c.batch_size) == ("sgd", 0.05, 0.9, 5e-4, "cosine", 128)
    assert TrainConfig.from_dict({"optimizer": "AdamW", "lr": 1e-3}).optimizer == "adamw"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lrate'\]; allowed keys: .*'lr'"):
        TrainConfig.from_dict({"lrate": 0.1})
    assert json.loads(json.dumps(c.to_dict()))["betas"] == [0.9, 0.999]


# ---------------------------------------------------------------- schedules and optimizers


def test_cosine_schedule_with_warmup_numbers():
    s = LRSchedule(0.1, "cosine", total_steps=100, warmup_steps=10)
    assert s(0) == pytest.approx(0.01)
    assert s(4) == pytest.approx(0.05)
    assert s(9) == pytest.approx(0.1)
    assert s(10) == pytest.approx(0.1)
    assert s(55) == pytest.approx(0.05)  # halfway through the cosine part
    assert s(10 + 30) == pytest.approx(0.05 * (1 + math.cos(math.pi / 3)))
    assert s(100) == pytest.approx(0.0, abs=1e-12)
    assert s(150) == pytest.approx(0.0, abs=1e-12)
    assert LRSchedule(0.1, "cosine", 100, min_lr=0.01)(100) == pytest.approx(0.01)


def test_step_and_constant_schedule_numbers():
    s = LRSchedule(0.1, "step", total_steps=1000, step_size_steps=30, gamma=0.1)
    assert [s(0), s(29), s(30), s(59), s(60), s(95)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.0001])
    c = LRSchedule(0.2, "constant", total_steps=10, warmup_steps=4)
    assert [c(i) for i in range(6)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])


def test_schedule_from_config_uses_epochs_as_units():
    c = cfg(schedule="step", step_size=2, gamma=0.5, warmup_epochs=0.5, lr=1.0)
    s = LRSchedule.from_config(c, steps_per_epoch=10, total_steps=100)
    assert (s.warmup_steps, s.step_size_steps) == (5, 20)
    assert [s(0), s(4), s(19), s(20), s(40)] == pytest.approx([0.2, 1.0, 1.0, 0.5, 0.25])


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop), ("adamw", torch.optim.AdamW)])
def test_build_optimizer(name, cls):
    model = mlp()
    opt = build_optimizer(model.named_parameters(), cfg(optimizer=name, lr=0.01, weight_decay=1e-3), lr=0.02)
    assert isinstance(opt, cls)
    g = opt.param_groups[0]
    assert (g["lr"], g["weight_decay"]) == (0.02, 1e-3)
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    sgd = build_optimizer(model.named_parameters(), cfg(nesterov=True))
    assert sgd.param_groups[0]["nesterov"] is True and sgd.param_groups[0]["momentum"] == 0.9


def test_plateau_rule():
    rule = Plateau(patience=2, min_delta=0.01)
    acc = lambda *a: [{"val_acc": v} for v in a]  # noqa: E731
    assert not rule(acc(0.5, 0.6))
    assert not rule(acc(0.5, 0.6, 0.7))
    assert not rule(acc(0.5, 0.6, 0.6, 0.62))  # +0.02 > min_delta within the window
    assert rule(acc(0.5, 0.6, 0.605, 0.609))  # best gain 0.009 <= 0.01
    assert Plateau(1, key="test_loss", mode="min")([{"test_loss": 1.0}, {"test_loss": 1.1}])
    both = any_of(None, lambda h: len(h) >= 3, rule)
    assert both(acc(0.1, 0.2, 0.3)) and not both(acc(0.1, 0.2))
    with pytest.raises(ConfigError, match="patience=0 is invalid"):
        Plateau(0)


# ---------------------------------------------------------------- training


def test_learns_separable_toy_problem(tmp_path, data):
    train, test = data
    model = mlp()
    r = Trainer(tmp_path, cfg(epochs=4, schedule="cosine", lr=0.1), quiet=True).run_stage(0, "mlp", model, train, test)
    assert isinstance(r, StageResult)
    assert r.model is model and r.stage == 0 and r.name == "mlp"
    assert r.test_acc > 0.97
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert [h["epoch"] for h in r.history] == [1, 2, 3, 4]
    assert r.params == 4 * 16 + 16 + 16 * 2 + 2
    assert r.meter["iterations"] == 4 * 8 and r.meter["samples"] == 4 * 256


@pytest.mark.parametrize("optimizer, lr", [("adamw", 0.01), ("rmsprop", 0.01), ("sgd", 0.05)])
def test_every_optimizer_learns(tmp_path, data, optimizer, lr):
    train, test = data
    c = cfg(optimizer=optimizer, lr=lr, epochs=3, momentum=0.0 if optimizer == "rmsprop" else 0.9, label_smoothing=0.1)
    r = Trainer(tmp_path, c, quiet=True).run_stage(0, optimizer, mlp(), train, test)
    assert r.test_acc > 0.95


def test_lr_follows_schedule_per_step(tmp_path, data):
    train, test = data  # 8 steps per epoch
    c = cfg(epochs=2, schedule="cosine", warmup_epochs=0.5, lr=0.2)
    r = Trainer(tmp_path, c, quiet=True).run_stage(0, "mlp", mlp(), train, test)
    sched = LRSchedule(0.2, "cosine", total_steps=16, warmup_steps=4)
    assert [h["lr"] for h in r.history] == pytest.approx([sched(7), sched(15)])
    assert r.optimizer_state["param_groups"][0]["lr"] == pytest.approx(sched(15))


def test_steps_budget_and_stage_lr_override(tmp_path, data):
    train, test = data
    r = Trainer(tmp_path, cfg(), quiet=True).run_stage(0, "mlp", mlp(), train, test, steps=5, lr=0.01)
    assert r.meter["iterations"] == 5 and r.meter["samples"] == 5 * 32
    assert len(r.history) == 1 and r.history[0]["step"] == 5
    assert r.history[0]["lr"] == pytest.approx(0.01)


def test_stopping_rule_fires(tmp_path, data):
    train, test = data
    seen = []

    def rule(history):
        seen.append(len(history))
        return history[-1]["epoch"] == 2

    r = Trainer(tmp_path / "a", cfg(epochs=10), quiet=True).run_stage(0, "mlp", mlp(), train, test, stopping=rule)
    assert seen == [1, 2] and len(r.history) == 2 and r.stopped_by == "stopping"
    # the built-in plateau rule: an accuracy gain of 1.0 is impossible, so it fires after patience + 1 epochs
    c = cfg(epochs=10, plateau_patience=2, plateau_min_delta=1.0)
    r2 = Trainer(tmp_path / "b", c, quiet=True).run_stage(0, "mlp", mlp(), train, test, val_set=test)
    assert len(r2.history) == 3 and r2.stopped_by == "stopping"
    r3 = Trainer(tmp_path / "c", cfg(epochs=3), quiet=True).run_stage(0, "mlp", mlp(), train, test)
    assert r3.stopped_by == "budget" and len(r3.history) == 3


def test_trainable_filter_leaves_frozen_params_bitwise_unchanged(tmp_path, data):
    train, test = data
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    r = Trainer(tmp_path, cfg(weight_decay=1e-2), quiet=True).run_stage(
        0, "lookahead", model, train, test, trainable=lambda n: n.startswith("2.")
    )
    after = model.state_dict()
    assert torch.equal(before["0.weight"], after["0.weight"]) and torch.equal(before["0.bias"], after["0.bias"])
    assert not torch.equal(before["2.weight"], after["2.weight"])
    assert r.optimizer_state["param_groups"][0]["param_names"] == ["2.weight", "2.bias"]
    assert all(p.requires_grad for p in model.parameters())  # flags restored after the stage
    with pytest.raises(ConfigError, match="no trainable parameters"):
        Trainer(tmp_path / "b", cfg(), quiet=True).run_stage(0, "x", mlp(), train, test, trainable=lambda n: False)


def test_masks_keep_masked_entries_exactly_zero(tmp_path, data):
    train, test = data
    model = mlp()
    mask = torch.zeros(16, 4, dtype=torch.bool)
    mask[::2] = True  # half the first layer's rows held at zero
    mask_out = torch.zeros(2, 16, dtype=torch.bool)
    mask_out[:, :3] = True
    masks = {"0.weight": mask, "2.weight": mask_out}
    r = Trainer(tmp_path, cfg(epochs=2, weight_decay=1e-3), quiet=True).run_stage(0, "zm", model, train, test, masks=masks)
    assert torch.count_nonzero(model[0].weight[mask]) == 0
    assert torch.count_nonzero(model[2].weight[mask_out]) == 0
    assert torch.count_nonzero(model[0].weight[~mask]) == (~mask).sum()  # the rest trained
    # zero-mask MACs skip the masked entries: 32 of 64 first-layer MACs, 6 of 32 second-layer MACs
    assert r.macs_per_sample == 96 - 32 - 6
    assert r.macs_per_sample == count_macs(model, train[0][0][None], masks=masks)
    assert r.meter["M"] == r.meter["samples"] * (96 - 38)
    with pytest.raises(NetgrowValueError, match="mask for unknown parameter '0.wieght'"):
        Trainer(tmp_path / "b", cfg(), quiet=True).run_stage(0, "zm", mlp(), train, test, masks={"0.wieght": mask})
    with pytest.raises(NetgrowValueError, match=r"has shape \(4, 16\) but the parameter has \(16, 4\)"):
        Trainer(tmp_path / "c", cfg(), quiet=True).run_stage(0, "zm", mlp(), train, test, masks={"0.weight": mask.T})


METRIC_KEYS = {
    "event", "stage", "name", "epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "M",
    "stage_M", "wall_time", "params", "macs_per_sample", "samples", "train_flops", "peak_memory",
}  # fmt: skip


def test_metrics_rows_meter_and_stage_files(tmp_path, data):
    train, test = data
    t = Trainer(tmp_path, cfg(epochs=2, per_class=True), quiet=True)
    r0 = t.run_stage(0, "small", mlp(hidden=8), train, test, info={"classes": 2, "arch": "mlp8"})
    r1 = t.run_stage(1, "big", mlp(hidden=16), train, test, epochs=1, info={"classes": 2, "arch": "mlp16"})
    all_rows = rows(tmp_path)
    epochs = [r for r in all_rows if r["event"] == "epoch"]
    ends = [r for r in all_rows if r["event"] == "stage_end"]
    assert len(epochs) == 3 and len(ends) == 2
    for row in epochs:
        assert METRIC_KEYS | {"classes", "arch", "per_class_acc"} <= set(row)
        assert row["stage_M"] == row["samples"] * row["macs_per_sample"]
        assert row["train_flops"] == 6 * row["stage_M"]
        assert len(row["per_class_acc"]) == 2
    assert r0.macs_per_sample == 4 * 8 + 8 * 2 and r1.macs_per_sample == 96
    assert r0.meter["M"] == 2 * 256 * 48 and r1.meter["M"] == 256 * 96
    # cumulative M runs on across stages
    assert [r["M"] for r in epochs] == [256 * 48, 2 * 256 * 48, 2 * 256 * 48 + 256 * 96]
    assert ends[1]["M"] == r0.meter["M"] + r1.meter["M"] and t.totals["M"] == ends[1]["M"]
    assert epochs[2]["wall_time"] >= epochs[1]["wall_time"] and epochs[2]["global_epoch"] == 3
    summary = json.loads((tmp_path / "stages" / "stage1.json").read_text())
    assert summary["name"] == "big" and summary["info"]["arch"] == "mlp16"
    assert summary["meter"]["M"] == r1.meter["M"] and summary["M_cumulative"] == ends[1]["M"]
    assert summary["test_acc"] == r1.test_acc and summary["params"] == r1.params
    cfg_json = json.loads((tmp_path / "train_config.json").read_text())
    assert cfg_json["batch_size"] == 32 and cfg_json["resolved_device"] == "cpu"
    import netgrow

    loaded = netgrow.load(tmp_path / "stages" / "stage0.safetensors", base=mlp(hidden=8))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), r0.model.state_dict().values()))


def test_carry_from_keeps_momentum(tmp_path, data):
    """One step after carrying: momentum = 0.9 * carried + fresh; so carried - fresh runs differ by 0.9 * buf0."""
    train, test = data
    t = Trainer(tmp_path / "a", cfg(epochs=1, weight_decay=0.0), quiet=True)
    r0 = t.run_stage(0, "s0", mlp(), train, test)
    start = copy.deepcopy(r0.model)
    buf0 = {i: s["momentum_buffer"].clone() for i, s in r0.optimizer_state["state"].items()}
    carried = t.run_stage(1, "s1", r0.model, train, test, steps=1, carry_from=(r0.model, r0.optimizer_state))
    fresh = Trainer(tmp_path / "b", cfg(epochs=1, weight_decay=0.0), quiet=True).run_stage(1, "s1", start, train, test, steps=1)
    for i, b in buf0.items():
        diff = carried.optimizer_state["state"][i]["momentum_buffer"] - fresh.optimizer_state["state"][i]["momentum_buffer"]
        torch.testing.assert_close(diff, 0.9 * b, rtol=1e-5, atol=1e-6)


def test_carry_from_through_an_explicit_param_map(tmp_path, data):
    """carry_from=(old, state, param_map): the hidden layer widened 16 -> 20 by copying units 0..3."""
    train, test = data
    t = Trainer(tmp_path, cfg(epochs=1, weight_decay=0.0), quiet=True)
    r0 = t.run_stage(0, "s0", mlp(), train, test)
    old = r0.model
    index = torch.cat([torch.arange(16), torch.arange(4)])
    counts = torch.bincount(index, minlength=16)
    big = mlp(hidden=20)
    with torch.no_grad():
        big[0].weight.copy_(old[0].weight[index])
        big[0].bias.copy_(old[0].bias[index])
        big[2].weight.copy_(old[2].weight[:, index] / counts[index].float())
        big[2].bias.copy_(old[2].bias)
    pm = {
        "0.weight": ParamSource("0.weight", [DimMap.replicate(0, index, counts, "out")]),
        "0.bias": ParamSource("0.bias", [DimMap.replicate(0, index, counts, "out")]),
        "2.weight": ParamSource("2.weight", [DimMap.replicate(1, index, counts, "in")]),
        "2.bias": ParamSource("2.bias"),
    }
    buf_old = r0.optimizer_state["state"][0]["momentum_buffer"].clone()
    from netgrow.train.trainer import _StageRun

    captured = {}
    orig = _StageRun._carry

    def spy(self):
        orig(self)
        captured.update({k: v["momentum_buffer"].clone() for k, v in self.optimizer.state_dict()["state"].items()})

    _StageRun._carry = spy
    try:
        t.run_stage(1, "s1", big, train, test, steps=1, carry_from=(old, r0.optimizer_state, pm))
    finally:
        _StageRun._carry = orig
    # replicated producer rows get 1/c of the old momentum (gradient scale 1/c)
    torch.testing.assert_close(captured[0], buf_old[index] / counts[index].float().unsqueeze(1))


# ---------------------------------------------------------------- faults and bad input


class NaNAfter(nn.Module):
    """Returns NaN logits from the ``after``-th training forward on."""

    def __init__(self, after: int):
        super().__init__()
        self.net = mlp()
        self.after = after
        self.calls = 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                return out * float("nan")
        return out


def test_nan_loss_stops_with_context_and_keeps_last_good_checkpoint(tmp_path, data):
    train, test = data
    model = NaNAfter(after=8 + 3)  # epoch 1 is clean (8 steps); the 12th step (epoch 2) is NaN
    t = Trainer(tmp_path, cfg(epochs=3), quiet=True)
    with pytest.raises(TrainingError) as e:
        t.run_stage(0, "nan", model, train, test)
    msg = str(e.value)
    assert "stage 0 (nan)" in msg and "epoch 2, step 12" in msg and "last good checkpoint" in msg
    from netgrow.train import checkpoint as ckpt

    tensors, meta, path = ckpt.load_last(tmp_path / "checkpoints")
    assert path.name == "last.safetensors" and meta["epoch"] == 1 and meta["step"] == 8
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model."))
    assert not (tmp_path / "stages" / "stage0.json").exists()
    assert [r["epoch"] for r in rows(tmp_path)] == [1]


def test_bad_inputs_fail_before_training(tmp_path, data):
    train, test = data
    t = Trainer(tmp_path, cfg(), quiet=True)
    bad_labels = TensorDataset(train.tensors[0], train.tensors[1] + 1)  # labels 1..2 for a 2-output model
    with pytest.raises(DataError, match=r"training set has labels in \[1, 2\] but the model has 2 outputs"):
        t.run_stage(0, "x", mlp(), bad_labels, test)
    with pytest.raises(DataError, match=r"test set has labels in \[-1, 0\]"):
        t.run_stage(0, "x", mlp(), train, TensorDataset(test.tensors[0], test.tensors[1] - 1))
    empty = TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(DataError, match="training set is empty"):
        t.run_stage(0, "x", mlp(), empty, test)
    with pytest.raises(DataError, match="test set is empty"):
        t.run_stage(0, "x", mlp(), train, empty)
    with pytest.raises(ConfigError, match=r"batch_size=512 is larger than the training set \(256 samples\)"):
        Trainer(tmp_path / "b", cfg(batch_size=512), quiet=True).run_stage(0, "x", mlp(), train, test)
    with pytest.raises(ConfigError, match="unknown optimizer 'lbfgs'"):
        Trainer(tmp_path / "c", cfg(optimizer="lbfgs"))
    with pytest.raises(ConfigError, match="epochs=0 is invalid"):
        t.run_stage(0, "x", mlp(), train, test, epochs=0)
    with pytest.raises(NetgrowValueError, match=r"cannot run on a training sample of shape \(4,\)"):
        t.run_stage(0, "x", nn.Linear(5, 2), train, test)
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing was trained


def test_existing_run_dir_needs_resume(tmp_path, data):
    train, test = data
    Trainer(tmp_path, cfg(epochs=1), quiet=True).run_stage(0, "x", mlp(), train, test)
    with pytest.raises(ConfigError, match="already holds .*pass resume=True"):
        Trainer(tmp_path, cfg(epochs=1), quiet=True)


def test_resume_skips_a_finished_stage(tmp_path, data):
    train, test = data
    r = Trainer(tmp_path, cfg(epochs=1), quiet=True).run_stage(0, "x", mlp(), train, test)
    fresh = mlp(seed=5)
    again = Trainer(tmp_path, cfg(epochs=1), quiet=True, resume=True).run_stage(0, "x", fresh, train, test)
    assert again.resumed and again.model is fresh
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), r.model.state_dict().values()))
    assert again.history == r.history and again.meter["M"] == r.meter["M"]
    s0, s1 = r.optimizer_state["state"], again.optimizer_state["state"]
    assert all(torch.equal(s0[i]["momentum_buffer"], s1[i]["momentum_buffer"]) for i in s0)
    assert len(rows(tmp_path)) == 2  # no row written twice


# ---------------------------------------------------------------- progress output


def test_progress_plain_lines_tqdm_and_quiet(tmp_path, data):
    train, test = data
    plain = io.StringIO()
    Trainer(tmp_path / "a", cfg(epochs=2), stream=plain).run_stage(0, "m", mlp(), train, test)
    lines = plain.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("stage 0 (m) epoch 1 step 8: train loss")
    assert "done: test acc" in lines[2]
    quiet = io.StringIO()
    Trainer(tmp_path / "b", cfg(epochs=2), quiet=True, stream=quiet).run_stage(0, "m", mlp(), train, test)
    assert quiet.getvalue() == ""
    bar_out = io.StringIO()
    p = Progress(stream=bar_out, tty=True)
    bar = p.epoch_bar(10, "epoch 1")
    bar.update(5, loss=0.5, acc=0.75)
    bar.close()
    assert "epoch 1" in bar_out.getvalue() and "5/10" in bar_out.getvalue()


def test_label_smoothing_bounds_the_training_loss(tmp_path, data):
    """With smoothing eps over 2 classes the loss cannot go below the smoothed target's entropy."""
    train, test = data
    eps = 0.2
    floor = -((1 - eps / 2) * math.log(1 - eps / 2) + (eps / 2) * math.log(eps / 2))  # 0.325
    c = cfg(epochs=4, lr=0.2, weight_decay=0.0)
    plain = Trainer(tmp_path / "a", c, quiet=True).run_stage(0, "m", mlp(), train, test)
    smooth = Trainer(tmp_path / "b", c.replace(label_smoothing=eps), quiet=True).run_stage(0, "m", mlp(), train, test)
    assert plain.history[-1]["train_loss"] < 0.1
    assert all(h["train_loss"] >= floor - 1e-6 for h in smooth.history)
    assert smooth.history[-1]["train_loss"] < floor + 0.05 and smooth.test_acc > 0.97
    # the test loss is plain cross-entropy either way
    assert smooth.history[-1]["test_loss"] < floor


def test_deterministic_mode_is_scoped_to_the_stage(tmp_path, data):
    train, test = data
    assert not torch.are_deterministic_algorithms_enabled()
    seen = []
    Trainer(tmp_path, cfg(epochs=1, deterministic=True), quiet=True).run_stage(
        0, "m", mlp(), train, test, stopping=lambda h: seen.append(torch.are_deterministic_algorithms_enabled())
    )
    assert seen == [True] and not torch.are_deterministic_algorithms_enabled()


def test_amp_and_channels_last_are_noops_on_cpu(tmp_path, data, caplog):
    train, test = data
    a, b = mlp(), mlp()
    Trainer(tmp_path / "a", cfg(), quiet=True).run_stage(0, "m", a, train, test)
    with caplog.at_level("INFO", logger="netgrow.train.trainer"):
        t = Trainer(tmp_path / "b", cfg(amp="bf16", channels_last=True), quiet=True)
        t.run_stage(0, "m", b, train, test)
    assert "amp='bf16' is GPU-only" in caplog.text and "channels_last is GPU-only" in caplog.text
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))

"""Checkpoint files: optimizer/RNG round trips, last/prev rotation, corrupt and pickled files, in-process resume."""

from __future__ import annotations

import logging
import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from netgrow.errors import CheckpointError
from netgrow.train import TrainConfig, Trainer, build_optimizer, safe_io
from netgrow.train import checkpoint as ckpt
from netgrow.train.metrics import MetricsWriter
from toy_data import blobs


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 3))


def _train_steps(model, opt, n=3):
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        x = torch.randn(8, 6, generator=g)
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()


@pytest.mark.parametrize("name", ["sgd", "adamw", "rmsprop"])
def test_optimizer_state_round_trip(tmp_path, name):
    model = net()
    c = TrainConfig(optimizer=name, lr=0.01, nesterov=name == "sgd")
    opt = build_optimizer(model.named_parameters(), c)
    _train_steps(model, opt)
    tensors, meta = ckpt.optimizer_to_tensors(opt.state_dict())
    safe_io.write_atomic(tmp_path / "o.safetensors", tensors, {"optimizer": meta})
    t2, m2 = safe_io.read(tmp_path / "o.safetensors")
    twin = net()
    twin.load_state_dict(model.state_dict())
    opt2 = build_optimizer(twin.named_parameters(), c)
    opt2.load_state_dict(ckpt.optimizer_from_tensors(t2, m2["optimizer"]))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for k, v in a["state"][i].items():
            assert torch.equal(v, b["state"][i][k]), (i, k)
    torch.manual_seed(3)
    _train_steps(model, opt)
    torch.manual_seed(3)
    _train_steps(twin, opt2)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    tensors, meta = ckpt.rng_state()
    safe_io.write_atomic(tmp_path / "r.safetensors", tensors, {"rng": meta})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    t2, m2 = safe_io.read(tmp_path / "r.safetensors")
    ckpt.set_rng_state(t2, m2["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def _payload(epoch: int):
    model = net(epoch)
    opt = build_optimizer(model.named_parameters(), TrainConfig())
    return ckpt.state_payload(model, opt, None, {"stage": 0, "epoch": epoch, "step": epoch * 10})


def test_last_and_prev_rotation_and_fallbacks(tmp_path, caplog):
    d = tmp_path / "checkpoints"
    assert ckpt.load_last(d) is None
    ckpt.save_last(d, *_payload(1))
    ckpt.save_last(d, *_payload(2))
    assert ckpt.load_last(d)[1]["epoch"] == 2
    assert safe_io.read(d / ckpt.PREV)[1]["epoch"] == 1
    # truncated last: warning, and the previous checkpoint is used
    data = (d / ckpt.LAST).read_bytes()
    (d / ckpt.LAST).write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="netgrow.train.checkpoint"):
        _, meta, path = ckpt.load_last(d)
    assert meta["epoch"] == 1 and path.name == ckpt.PREV
    assert "truncated or corrupted" in caplog.text and "falling back to the previous checkpoint" in caplog.text
    # a pickle under the name of the latest checkpoint is refused, never unpickled
    torch.save({"x": 1}, d / ckpt.LAST)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="netgrow.train.checkpoint"):
        assert ckpt.load_last(d)[1]["epoch"] == 1
    assert "never unpickles" in caplog.text
    # both unreadable: a clear error
    (d / ckpt.PREV).write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="no readable checkpoint in .*start the run again without resume"):
        ckpt.load_last(d)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, caplog, protocol):
    d = tmp_path / "checkpoints"
    ckpt.save_last(d, *_payload(1))
    ckpt.save_last(d, *_payload(2))
    marker = tmp_path / "pwned"
    (d / ckpt.LAST).write_bytes(pickle.dumps(_RunsCode(marker), protocol=protocol))
    with pytest.raises(CheckpointError):
        safe_io.read(d / ckpt.LAST)
    with caplog.at_level(logging.WARNING, logger="netgrow.train.checkpoint"):
        assert ckpt.load_last(d)[1]["epoch"] == 1  # the previous good checkpoint
    assert not marker.exists()


def test_model_tensors_must_fit(tmp_path):
    tensors, _ = ckpt.model_tensors(net())
    wide = nn.Sequential(nn.Linear(6, 13), nn.BatchNorm1d(13), nn.ReLU(), nn.Dropout(0.2), nn.Linear(13, 3))
    with pytest.raises(CheckpointError, match=r"shape differs for 0.bias \(13,\) vs \(12,\), 0.weight \(13, 6\) vs \(12, 6\).*re-apply"):
        ckpt.load_model_tensors(wide, tensors, "x")


def test_metrics_truncate_after(tmp_path):
    w = MetricsWriter(tmp_path / "m.jsonl")
    for stage, step, event in [(0, 5, "epoch"), (0, 10, "epoch"), (0, 10, "stage_end"), (1, 3, "epoch"), (1, 6, "epoch")]:
        w.write({"stage": stage, "step": step, "event": event})
    assert w.truncate_after(1, 3) == 1
    assert [(r["stage"], r["step"]) for r in w.rows()] == [(0, 5), (0, 10), (0, 10), (1, 3)]
    assert w.truncate_after(0, None) == 4 and w.rows() == []


# ---------------------------------------------------------------- in-process interrupt and resume


class Interrupt(Exception):
    pass


def _interrupt_after(model: nn.Module, n: int):
    calls = [0]

    def hook(module, args):
        if module.training:
            calls[0] += 1
            if calls[0] > n:
                raise Interrupt

    return model.register_forward_pre_hook(hook)


def _run(run_dir, model, resume=False, interrupt=None):
    c = TrainConfig(epochs=3, batch_size=16, lr=0.05, checkpoint_every=5, deterministic=True, seed=3)
    t = Trainer(run_dir, c, quiet=True, resume=resume)
    handle = _interrupt_after(model, interrupt) if interrupt is not None else None
    try:
        return t.run_stage(0, "s", model, blobs(96, 0), blobs(48, 1))
    finally:
        if handle is not None:
            handle.remove()


@pytest.mark.parametrize("interrupt, truncate", [(7, False), (12, False), (14, True)])
def test_interrupted_run_resumes_bitwise(tmp_path, interrupt, truncate):
    """6 steps per epoch; checkpoints at the end of every epoch and every 5 steps (dropout + BN + momentum)."""
    ref = _run(tmp_path / "ref", net())
    with pytest.raises(Interrupt):
        _run(tmp_path / "run", net(), interrupt=interrupt)
    if truncate:  # the newest checkpoint got damaged: the previous one is used, still exact
        last = tmp_path / "run" / "checkpoints" / ckpt.LAST
        last.write_bytes(last.read_bytes()[:1000])
    resumed = _run(tmp_path / "run", net(seed=9), resume=True)
    for (k, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [h["test_acc"] for h in ref.history] == [h["test_acc"] for h in resumed.history]
    assert [h["train_loss"] for h in ref.history] == pytest.approx([h["train_loss"] for h in resumed.history], rel=1e-12)
    assert resumed.meter["samples"] == ref.meter["samples"] and resumed.meter["M"] == ref.meter["M"]
    rows = MetricsWriter(tmp_path / "run" / "metrics.jsonl").rows()
    assert [(r["event"], r["epoch"]) for r in rows] == [("epoch", 1), ("epoch", 2), ("epoch", 3), ("stage_end", 3)]

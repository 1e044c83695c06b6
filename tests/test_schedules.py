"""Warmup-stable-decay and reduce-on-plateau hand-checked on synthetic histories; every decision reads the
validation metrics, never the test metrics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netgrow.data import InMemoryDataset
from netgrow.errors import ConfigError
from netgrow.strategies.angle import AngleStopping
from netgrow.strategies.rules import make_rule
from netgrow.train import TrainConfig, Trainer
from netgrow.train.schedules import ReduceOnPlateau, WarmupStableDecay, build_schedule, plateaued
from netgrow.train.stopping import Plateau


def rows(vals, spe=10, test=None):
    """Epoch rows with val_acc = vals (step = epoch * spe); test_acc the opposite trend unless given."""
    test = test if test is not None else [1.0 - v for v in vals]
    return [{"epoch": i + 1, "step": (i + 1) * spe, "val_acc": v, "test_acc": t} for i, (v, t) in enumerate(zip(vals, test))]


def feed(s, vals, **kw):
    hist = rows(vals, **kw)
    for i in range(len(hist)):
        s.observe(hist[: i + 1])
    return hist


def test_plateaued_by_hand():
    assert not plateaued([0.5, 0.6], 2, 0.0)
    assert plateaued([0.5, 0.6, 0.6, 0.59], 2, 0.0)
    assert not plateaued([0.5, 0.6, 0.6, 0.61], 2, 0.0)
    assert plateaued([0.5, 0.6, 0.6, 0.605], 2, 0.01)
    assert not plateaued([0.5, 0.6, 0.6, 0.59], 2, 0.0, since=3)  # the window must lie after `since`


def test_wsd_warmup_stable_then_plateau_decay_and_stop():
    s = WarmupStableDecay(0.1, total_steps=1000, warmup_steps=4, decay_steps=20, min_lr=0.0, patience=2)
    assert [s(i) for i in range(5)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    feed(s, [0.5, 0.6, 0.7, 0.7, 0.69])  # best 0.7 at epoch 3; epochs 4, 5 no gain -> plateau at step 50
    assert s.decay_start == 50 and not s.finished(50)
    assert s(49) == 0.1 and s(50) == pytest.approx(0.095) and s(59) == pytest.approx(0.05)
    assert s(69) == pytest.approx(0.0) and s(200) == 0.0
    assert not s.finished(69) and s.finished(70)
    # further rows after the decay began do not move it
    s.observe(rows([0.5, 0.6, 0.7, 0.7, 0.69, 0.2, 0.1]))
    assert s.decay_start == 50


def test_wsd_budget_starts_the_decay_when_no_plateau_comes():
    s = WarmupStableDecay(0.2, total_steps=100, decay_steps=30, min_lr=0.02, patience=3)
    feed(s, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])  # always improving
    assert s.decay_start is None and s.start() == 70
    assert s(69) == 0.2 and s(70) == pytest.approx(0.2 - 0.18 / 30) and s(99) == pytest.approx(0.02)
    assert not s.finished(99) and s.finished(100)


def test_wsd_without_decay_stops_at_the_plateau_at_the_stable_rate():
    s = WarmupStableDecay(0.1, total_steps=None, decay_steps=10, patience=1, decay=False)
    feed(s, [0.5, 0.6])
    assert not s.finished(20)
    feed(s, [0.5, 0.6, 0.6])
    assert s.finished(30) and s(10**6) == 0.1 and s.start() is None


def test_reduce_on_plateau_by_hand():
    s = ReduceOnPlateau(1.0, gamma=0.5, max_reductions=2, patience=1)
    feed(s, [0.5, 0.6, 0.6])  # plateau 1 at step 30
    assert s.reductions == [30] and s(29) == 1.0 and s(30) == 0.5
    s.reset()
    feed(s, [0.5, 0.6, 0.6, 0.6])  # epoch 4 (after the reduction) gains nothing either: reduced again
    assert s.reductions == [30, 40] and s(40) == 0.25
    s.reset()
    feed(s, [0.5, 0.6, 0.6, 0.7, 0.7])  # plateau at 30, gain at 40, plateau again at 50
    assert s.reductions == [30, 50] and s(50) == 0.25 and not s.finished(50)
    feed(s, [0.5, 0.6, 0.6, 0.7, 0.7, 0.71, 0.71])  # third plateau: max_reductions reached -> stop
    assert s.reductions == [30, 50] and s.finished(70)


def test_replay_rebuilds_the_state_of_an_observed_history():
    hist = rows([0.5, 0.6, 0.6, 0.7, 0.7, 0.71, 0.71])
    a = ReduceOnPlateau(1.0, gamma=0.5, max_reductions=3, patience=1)
    for i in range(len(hist)):
        a.observe(hist[: i + 1])
    b = ReduceOnPlateau(1.0, gamma=0.5, max_reductions=3, patience=1)
    b.replay(hist)
    assert a.reductions == b.reductions == [30, 50, 70]
    w1 = WarmupStableDecay(0.1, 1000, decay_steps=5, patience=1)
    w2 = WarmupStableDecay(0.1, 1000, decay_steps=5, patience=1)
    feed(w1, [0.5, 0.5])
    w2.replay(rows([0.5, 0.5]))
    assert w1.decay_start == w2.decay_start == 20


def test_every_decision_reads_validation_not_test():
    # val improves steadily, test is flat: a rule reading test would fire
    vals = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97]
    hist = rows(vals, test=[0.5] * len(vals))
    assert not Plateau(patience=2)(hist)
    assert not make_rule("plateau", patience=2)(hist)
    assert not AngleStopping(ws=3, gamma=0.5)(rows([0.5, 0.6, 0.7, 0.8, 0.9, 1.0], test=[0.5] * 6))
    w = WarmupStableDecay(0.1, None, decay_steps=5, patience=2)
    feed(w, vals, test=[0.5] * len(vals))
    assert w.decay_start is None
    r = ReduceOnPlateau(0.1, patience=2)
    feed(r, vals, test=[0.5] * len(vals))
    assert r.reductions == []
    # and the opposite: val flat, test improving -> every rule fires
    flat = rows([0.5] * 7, test=vals)
    assert Plateau(patience=2)(flat) and make_rule("plateau", patience=2)(flat)
    assert AngleStopping(ws=3, gamma=0.5)(rows([0.5] * 6, test=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0]))


def test_build_schedule_roles():
    cfg = TrainConfig(schedule="wsd", cross_stage=True, warmup_epochs=1, decay_epochs=2, plateau_patience=1)
    first = build_schedule(cfg, 10, 100, 0.1, "first")
    middle = build_schedule(cfg, 10, 100, 0.1, "middle")
    last = build_schedule(cfg, 10, 100, 0.1, "last")
    assert first(0) == pytest.approx(0.01) and middle(0) == last(0) == 0.1
    assert first.start() is None and middle.start() is None and last.start() == 80
    assert build_schedule(cfg.replace(cross_stage=False), 10, 100, 0.1, "middle").start() == 80
    with pytest.raises(ConfigError, match="cross_stage"):
        TrainConfig(schedule="cosine", cross_stage=True)
    with pytest.raises(ConfigError, match="plateau_patience"):
        TrainConfig(schedule="plateau")
    with pytest.raises(ConfigError, match="role"):
        build_schedule(cfg, 10, 100, 0.1, "start")


class _Flip(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _data(n, seed, flip=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 2, 2, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    return InMemoryDataset(x, 1 - y if flip else y, ["a", "b"], "toy")


@pytest.mark.parametrize("schedule", ["constant", "wsd"])
def test_trainer_stopping_ignores_the_test_set(tmp_path, schedule):
    """The same run with the real test set and with one whose labels are flipped (its accuracy is 1 - the
    real one) stops at the same epoch with the same weights: no decision looked at the test set."""
    train, val, test = _data(256, 0), _data(128, 1), _data(128, 2)
    cfg = TrainConfig(optimizer="sgd", lr=0.05, schedule=schedule, epochs=30, plateau_patience=2,
                      batch_size=64, decay_epochs=1)
    out = []
    for i, t in enumerate((test, _data(128, 2, flip=True))):
        torch.manual_seed(0)
        r = Trainer(tmp_path / str(i), cfg, quiet=True).run_stage(0, "m", _Flip(), train, t, val_set=val)
        out.append(r)
    a, b = out
    assert len(a.history) == len(b.history) < 30 and a.stopped_by == b.stopped_by != "budget"
    assert [h["val_acc"] for h in a.history] == [h["val_acc"] for h in b.history]
    assert [h["test_acc"] for h in a.history] == pytest.approx([1 - h["test_acc"] for h in b.history])
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_trainer_plateau_without_validation_set_is_refused(tmp_path):
    cfg = TrainConfig(epochs=2, plateau_patience=1, batch_size=64)
    with pytest.raises(ConfigError, match="val_set"):
        Trainer(tmp_path, cfg, quiet=True).run_stage(0, "m", _Flip(), _data(128, 0), _data(64, 1))

"""TensorBoard logging, read back with TensorBoard's own reader (event_accumulator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import netgrow
from netgrow.errors import ConfigError
from netgrow.train import TrainConfig, Trainer
from toy_data import blobs

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read_events(run_dir: Path) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_every_metrics_row_and_growth_event_reaches_tensorboard(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, tensorboard=True, seed=0)
    trainer = Trainer(tmp_path, cfg, quiet=True)
    train, test = blobs(64, 0), blobs(32, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    r0 = trainer.run_stage(0, "small", model, train, test)
    big = netgrow.widen(r0.model, {"0": 12}, example_input=torch.randn(2, 6))
    trainer.run_stage(1, "wide", big, train, test, epochs=1, carry_from=(r0.model, r0.optimizer_state))

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["event"] == "epoch"]
    acc = read_events(tmp_path)
    tags = acc.Tags()["scalars"]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "M", "params", "macs_per_sample"):
        assert key in tags, key
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        want = [(r["global_epoch"], pytest.approx(float(r[key]), rel=1e-6)) for r in epochs]
        assert got == want, key
    assert [e.value for e in acc.Scalars("stage_end/test_acc")] == pytest.approx(
        [r["test_acc"] for r in rows if r["event"] == "stage_end"], rel=1e-6
    )
    # growth events: one per stage start, the second naming the widen and the parameter counts
    assert [e.value for e in acc.Scalars("growth/params")] == [8 * 6 + 8 + 3 * 8 + 3, 12 * 6 + 12 + 3 * 12 + 3]
    texts = [e.tensor_proto.string_val[0].decode() for e in acc.Tensors("growth/text_summary")]
    assert len(texts) == 2 and "stage 1 (wide): widen; parameters 83 -> 123" in texts[1]


def test_tensorboard_is_off_by_default(tmp_path):
    Trainer(tmp_path, TrainConfig(epochs=1), quiet=True)
    assert not (tmp_path / "tensorboard").exists()


def test_tensorboard_must_be_a_boolean():
    with pytest.raises(ConfigError, match="tensorboard='yes' is invalid; use true or false"):
        TrainConfig(tensorboard="yes")


@pytest.mark.slow
def test_cli_tensorboard_flag_and_threads(tmp_path, capsys):
    from netgrow.cli.main import main

    cfg = tmp_path / "exp.toml"
    cfg.write_text(
        'strategy = "scratch"\nname = "tb"\n[data]\nname = "digits"\nlimit_train = 100\nlimit_test = 50\n'
        '[model]\narch = "mlp"\nwidth = 0.25\n[train]\nepochs = 2\nbatch_size = 50\n'
    )
    threads = torch.get_num_threads()
    try:
        rc = main(["run", str(cfg), "--out", str(tmp_path / "run"), "--quiet", "--tensorboard", "--threads", "2"])
        assert rc == 0, capsys.readouterr().err
        assert json.loads((tmp_path / "run" / "train_config.json").read_text())["torch_threads"] == 2
    finally:
        torch.set_num_threads(threads)
    acc = read_events(tmp_path / "run")
    assert [e.step for e in acc.Scalars("test_acc")] == [1, 2]

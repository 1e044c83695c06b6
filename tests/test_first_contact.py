"""What a newcomer sees: log lines without a terminal, no repeated messages, one clock, file modes."""

from __future__ import annotations

import io
import logging
import re
import stat

import torch
from torch import nn
from torch.utils.data import TensorDataset

import netgrow
from netgrow.models import create
from netgrow.train import TrainConfig, Trainer


def blobs(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g)
    x[torch.arange(n), y] += 2.0
    return TensorDataset(x, y)


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def train_once(run_dir, stream, resume=False):
    trainer = Trainer(run_dir, TrainConfig(epochs=2, batch_size=16, log_every=2), stream=stream, resume=resume)
    return trainer.run_stage(0, "small", small(), blobs(96, 0), blobs(30, 1))


def test_without_a_terminal_training_prints_plain_lines_every_log_every_steps(tmp_path):
    stream = io.StringIO()  # not a terminal, like a log file
    train_once(tmp_path, stream)
    text = stream.getvalue()
    assert "\r" not in text
    batches = re.findall(r"stage 0 \(small\) epoch (\d)/2 batch (\d)/6: train loss [\d.]+ acc [\d.]+ \| run time", text)
    assert batches == [(e, b) for e in "12" for b in "246"]


def test_epoch_and_done_lines_use_the_same_clock(tmp_path):
    stream = io.StringIO()
    train_once(tmp_path, stream)
    lines = stream.getvalue().splitlines()
    epoch_times = [float(m) for line in lines for m in re.findall(r"epoch \d step \d+: .* run time ([\d.]+) s$", line)]
    done = next(line for line in lines if " done: " in line)
    done_time = float(re.search(r"run time ([\d.]+) s \(stage ([\d.]+) s\)", done).group(1))
    assert len(epoch_times) == 2 and done_time >= epoch_times[-1] >= epoch_times[0]


def test_resume_of_a_finished_stage_is_announced_once(tmp_path, caplog):
    train_once(tmp_path, io.StringIO())
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="netgrow"):
        train_once(tmp_path, stream, resume=True)
    said = stream.getvalue() + caplog.text
    assert said.count("finished earlier") == 1 and "finished before" not in said


def test_loading_a_grown_model_does_not_repeat_the_growth_messages(tmp_path, caplog):
    x = torch.randn(2, 1, 8, 8)
    model = create("mlp", width=0.25, in_channels=1, input_size=8)
    model = netgrow.widen(model, {"features.1": 64}, example_input=x)
    netgrow.save(model, tmp_path / "m.safetensors")
    with caplog.at_level(logging.INFO, logger="netgrow"):
        netgrow.load(tmp_path / "m.safetensors")
    assert "widen:" not in caplog.text


def test_one_runs_outputs_share_one_file_mode(tmp_path):
    train_once(tmp_path, io.StringIO())
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*") if p.is_file()}
    assert "metrics.jsonl" in modes and "checkpoints/last.safetensors" in modes and "stages/stage0.json" in modes
    assert len(set(modes.values())) == 1, modes

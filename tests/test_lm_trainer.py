"""The Trainer on next-token models: per-token loss and accuracy, bits per character, MACs per token."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from netgrow.data import load
from netgrow.models import create, grow
from netgrow.train import Trainer, TrainConfig
from netgrow.train.macs import count_macs

T = 16


def corpus(tmp_path: Path):
    path = tmp_path / "rhymes.txt"
    lines = [f"the {w} sat on the mat, the {w} ate the {f}." for w in ("cat", "dog", "rat", "bat") for f in ("fish", "ham")]
    path.write_text("\n\n".join(lines * 6))
    return load("text", root=path, block_size=T, val_fraction=0.1, test_fraction=0.1)


def test_trainer_reports_token_loss_bits_per_character_and_macs_per_token(tmp_path: Path) -> None:
    train, test = corpus(tmp_path)
    torch.manual_seed(0)
    model = create("gpt", vocab_size=train.vocab_size, block_size=T, n_layer=1, n_head=2, n_embd=16)
    cfg = TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.0, batch_size=8, epochs=2, schedule="constant")
    r = Trainer(tmp_path / "run", cfg, quiet=True).run_stage(0, "gpt", model, train, test)
    per_seq = count_macs(model, train[0][0].unsqueeze(0))
    assert r.macs_per_sample * T == per_seq  # one sample = one predicted token
    first, last = r.history
    assert last["samples"] == 2 * len(train) * T and last["M"] == last["samples"] * r.macs_per_sample
    for row in r.history:
        assert math.isclose(row["train_bpc"], row["train_loss"] / math.log(2))
        assert math.isclose(row["test_bpc"], row["test_loss"] / math.log(2))
        assert 0.0 <= row["test_acc"] <= 1.0
    assert last["train_loss"] < first["train_loss"] < math.log(train.vocab_size) + 0.5
    x, y = test.tensors  # test_loss is the mean cross-entropy per token over the whole test split
    with torch.no_grad():
        want = F.cross_entropy(r.model.eval()(x).flatten(0, 1), y.flatten())
    assert math.isclose(last["test_loss"], float(want), rel_tol=1e-5)


def test_a_grown_gpt_continues_with_its_adamw_state_carried(tmp_path: Path) -> None:
    train, test = corpus(tmp_path)
    torch.manual_seed(0)
    small = create("gpt", vocab_size=train.vocab_size, block_size=T, n_layer=1, n_head=2, n_embd=16)
    cfg = TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.1, batch_size=8, epochs=1)
    trainer = Trainer(tmp_path / "run", cfg, quiet=True)
    r0 = trainer.run_stage(0, "small", small, train, test)
    big = grow(r0.model, {"n_layer": 2, "n_embd": 32, "n_head": 4}, example_input=train[0][0].unsqueeze(0), noise=0.1)
    r1 = trainer.run_stage(1, "big", big, train, test, carry_from=(r0.model, r0.optimizer_state))
    assert r1.macs_per_sample > r0.macs_per_sample
    assert r1.history[-1]["M"] > r0.history[-1]["M"]  # cumulative over stages
    assert r1.history[0]["train_loss"] < r0.history[0]["train_loss"] + 0.5  # no blow-up after growth

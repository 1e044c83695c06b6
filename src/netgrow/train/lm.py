"""Next-token (language-model) training in the Trainer: every predicted token counts as one sample.

A model whose output is ``(batch, T, vocab)`` for targets ``(batch, T)`` is a next-token model (e.g.
``netgrow.models.create("gpt")`` on ``netgrow.data.load("fortunes")``). The Trainer then

- flattens logits and targets to ``(batch·T, vocab)`` / ``(batch·T,)`` before the loss and the accuracy,
  so ``train_loss``/``test_loss`` are the mean cross-entropy per token (nats) and ``*_acc`` the next-token
  accuracy;
- counts samples in tokens and MACs per token (``count_macs`` of one sequence / T, exact: every term of a
  causal transformer's count is a multiple of T), so ``M = tokens x MACs/token`` = sequences x MACs/sequence;
- adds bits per token to every metrics row: ``train_bpc``, ``test_bpc`` (and ``val_bpc`` when there is a
  validation split) = loss / ln 2 -- bits per character on a character-level corpus.

    >>> import torch
    >>> out, y = as_tokens(torch.zeros(2, 5, 7), torch.zeros(2, 5, dtype=torch.long))
    >>> tuple(out.shape), tuple(y.shape), predictions_per_sample(torch.zeros(2, 5, 7))
    ((10, 7), (10,), 5)
    >>> add_bits({"train_loss": math.log(2) * 1.5, "test_loss": None})
    {'train_loss': 1.0397207708399179, 'test_loss': None, 'train_bpc': 1.5, 'test_bpc': None}
"""

from __future__ import annotations

import math
from typing import Any

import torch

LOSS_KEYS = ("train_loss", "val_loss", "test_loss")


def as_tokens(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, V)`` logits and ``(B, T)`` targets as ``(B·T, V)`` and ``(B·T,)``; anything else unchanged."""
    if out.dim() == 3 and y.dim() == 2:
        return out.reshape(-1, out.shape[-1]), y.reshape(-1)
    return out, y


def predictions_per_sample(out: torch.Tensor) -> int:
    """How many predictions one input sample yields: T for ``(B, T, V)`` logits, else 1."""
    return int(out.shape[1]) if out.dim() == 3 else 1


def add_bits(row: dict[str, Any]) -> dict[str, Any]:
    """Add ``*_bpc`` (loss in bits) next to every ``*_loss`` of a metrics row that has one; returns the row."""
    for key in LOSS_KEYS:
        if key in row:
            loss = row[key]
            row[key.replace("_loss", "_bpc")] = None if loss is None else loss / math.log(2)
    return row

"""A GPT (decoder-only transformer) family, nanoGPT style: pre-LN blocks, learned positions, tied head.

``GPT(config)`` maps token ids ``(batch, T)`` to next-token logits ``(batch, T, vocab_size)``::

    x = wte[idx] + wpe[0..T)                      (residual stream, n_embd wide)
    for block in blocks:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
    logits = ln_f(x) @ wte.weightᵀ                 (the head IS the input embedding: one parameter)

Attention has ``n_head`` heads of ``head_dim`` each (``head_dim`` is a field of its own, so heads can be
added while ``head_dim`` stays fixed and ``n_head·head_dim`` need not equal ``n_embd``); ``c_attn`` is one
fused q|k|v projection, causal ``scaled_dot_product_attention``. The MLP is ``Linear(n_embd, d_ff)``-GELU-
``Linear(d_ff, n_embd)``. Initialisation as nanoGPT: N(0, 0.02), residual output projections
N(0, 0.02/sqrt(2·n_layer)), biases 0.

The tied head is computed functionally (``F.linear(x, wte.weight)``), so the state_dict holds the shared
weight once (``wte.weight``) and safetensors checkpoints need no special case.

    >>> import torch
    >>> from netgrow.models import create
    >>> m = create("gpt", vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=32)
    >>> m(torch.zeros(3, 16, dtype=torch.long)).shape
    torch.Size([3, 16, 32])

Growth paths (depth, d_model, heads, FFN), all exact: ``netgrow.models.gpt_grow``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netgrow.errors import NetgrowTypeError, NetgrowValueError
from netgrow.models.registry import register_config_model


@dataclass(frozen=True)
class GPTConfig:
    """GPT hyper-parameters. Defaults: nanoGPT's character-level "baby GPT" (6 layers, 6 heads, 384 wide).

    ``head_dim`` defaults to ``n_embd // n_head`` and ``d_ff`` to ``4·n_embd``.
    """

    vocab_size: int = 65  # tokens (characters for a character-level corpus)
    block_size: int = 256  # longest context, in tokens (size of the positional table)
    n_layer: int = 6  # transformer blocks
    n_head: int = 6  # attention heads per block
    n_embd: int = 384  # residual stream width (d_model)
    head_dim: int | None = None  # per-head q/k/v width; None -> n_embd // n_head
    d_ff: int | None = None  # MLP hidden width; None -> 4 * n_embd
    dropout: float = 0.0  # dropout on embeddings, attention weights and residual branches
    bias: bool = True  # biases in Linear layers and LayerNorms

    def __post_init__(self) -> None:
        for key in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise NetgrowValueError(f"GPTConfig: {key}={value!r} is invalid; use an integer >= 1")
        if self.head_dim is None:
            if self.n_embd % self.n_head:
                raise NetgrowValueError(
                    f"GPTConfig: n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                    "pick a divisible pair or set head_dim explicitly"
                )
            object.__setattr__(self, "head_dim", self.n_embd // self.n_head)
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.n_embd)
        for key in ("head_dim", "d_ff"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise NetgrowValueError(f"GPTConfig: {key}={value!r} is invalid; use an integer >= 1")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise NetgrowValueError(f"GPTConfig: dropout={self.dropout!r} is invalid; use a number in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """All fields, resolved (``head_dim``/``d_ff`` filled in), JSON-serialisable."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "GPTConfig":
        """A copy with ``changes`` applied (validated)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise NetgrowValueError(
                f"GPTConfig has no field(s) {unknown}; fields are {[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **changes)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a fused q|k|v projection (rows: [q heads | k heads | v heads])."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        inner = config.n_head * config.head_dim  # type: ignore[operator]
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.c_attn = nn.Linear(config.n_embd, 3 * inner, bias=config.bias)
        self.c_proj = nn.Linear(inner, config.n_embd, bias=config.bias)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        inner = self.n_head * self.head_dim  # type: ignore[operator]
        q, k, v = self.c_attn(x).split(inner, dim=2)
        q, k, v = (z.view(b, t, self.n_head, self.head_dim).transpose(1, 2) for z in (q, k, v))  # type: ignore[arg-type]
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(b, t, inner)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Linear(n_embd, d_ff) - GELU - Linear(d_ff, n_embd)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.d_ff, bias=config.bias)  # type: ignore[arg-type]
        self.act = nn.GELU()
        self.c_proj = nn.Linear(config.d_ff, config.n_embd, bias=config.bias)  # type: ignore[arg-type]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """A pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The GPT of ``config`` (see the module docstring); ``forward(idx) -> logits``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise NetgrowTypeError(f"GPT: config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # residual outputs: GPT-2's 1/sqrt(2·n_layer) scaling
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * self.config.n_layer))
            elif name.endswith(".weight") and p.dim() == 2:  # Linear and Embedding tables
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
            raise NetgrowValueError(
                f"GPT: expected token ids of shape (batch, T) and an integer dtype, got {tuple(idx.shape)} "
                f"{idx.dtype}; pass a LongTensor of token ids"
            )
        t = idx.shape[1]
        if t > self.config.block_size:
            raise NetgrowValueError(
                f"GPT: a sequence of {t} tokens is longer than block_size={self.config.block_size}; "
                "crop the input or build the model with a larger block_size"
            )
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)  # tied head


@register_config_model(GPTConfig)
def gpt(**config: Any) -> GPT:
    """A GPT; keywords are ``GPTConfig`` fields (defaults: nanoGPT's baby GPT)."""
    return GPT(GPTConfig(**config))


def gpt_config(model: nn.Module) -> GPTConfig:
    """The ``GPTConfig`` of a GPT model (refuses anything else)."""
    config = getattr(model, "config", None)
    if not isinstance(model, GPT) or not isinstance(config, GPTConfig):
        raise NetgrowTypeError(f"expected a netgrow GPT (netgrow.models.create('gpt', ...)), got {type(model).__name__}")
    return config

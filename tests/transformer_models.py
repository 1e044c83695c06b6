"""Tiny transformers for the growth tests: Hugging Face GPT-2 / Llama / BERT from configs (random weights,
no downloads) and a nanoGPT-style model written here (torch.fx traceable; learned positions as a bare
parameter, tied embeddings)."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 50
# transformers warns about special token ids outside a tiny vocabulary; irrelevant here
logging.getLogger("transformers").setLevel(logging.ERROR)


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=32, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def llama() -> nn.Module:
    """GQA (4 query heads, 2 key/value heads), RoPE, RMSNorm, SwiGLU, tied embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
        vocab_size=VOCAB, max_position_embeddings=32, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # RMSNorm weights start at 1: make them non-trivial so a wrong mapping shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def bert() -> nn.Module:
    """Post-LN encoder with a masked-LM head whose decoder is tied to the word embeddings."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=VOCAB,
        max_position_embeddings=32, pad_token_id=0,
    )  # fmt: skip
    return BertForMaskedLM(cfg).eval()


class Attention(nn.Module):
    """``style="minus_one"``: views with -1 heads and chunk; ``"nanogpt"``: nanoGPT's own code (split by
    ``self.n_embd``, ``view(B, T, self.n_head, C // self.n_head)``, ``view(B, T, C)``); ``"constant"``: the head
    count is a class constant, not an attribute of the module (netgrow cannot know it follows); ``"manual"``:
    nanoGPT's attention without flash (``q @ kᵀ * (1 / math.sqrt(k.size(-1)))``, a causal-mask buffer,
    softmax, ``@ v``), which torch.fx cannot trace (``math.sqrt`` of a traced size): torch.export captures it."""

    HEADS = 4

    def __init__(self, n_embd: int, n_head: int, style: str = "minus_one"):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_embd, self.head_dim, self.style = n_embd, n_embd // n_head, style
        if style != "constant":  # "constant": no attribute of the module holds the head count
            self.n_head = n_head
        if style == "manual":
            self.register_buffer("bias", torch.tril(torch.ones(16, 16)).view(1, 1, 16, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        if self.style == "manual":
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = F.softmax(att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf")), dim=-1)
            return self.c_proj((att @ v).transpose(1, 2).contiguous().view(B, T, C))
        if self.style == "nanogpt":
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        q, k, v = self.c_attn(x).chunk(3, dim=2)
        heads = self.HEADS if self.style == "constant" else -1
        q, k, v = (t.view(B, T, heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, style: str = "minus_one"):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head, style)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """Pre-LN GPT: token embedding + learned positions (a bare parameter), blocks, final LN, tied head."""

    def __init__(self, n_layer: int = 2, n_embd: int = 32, n_head: int = 4, block_size: int = 16,
                 style: str = "minus_one"):  # fmt: skip
        super().__init__()
        self.wte = nn.Embedding(VOCAB, n_embd)
        self.wpe = nn.Parameter(torch.randn(1, block_size, n_embd) * 0.1)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, style) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe[:, : idx.size(1)]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def nanogpt(style: str = "minus_one") -> nn.Module:
    torch.manual_seed(0)
    model = NanoGPT(style=style).eval()
    with torch.no_grad():  # non-trivial norm affines, so a wrong mapping of them shows
        for name, p in model.named_parameters():
            if ".ln_" in name or name.startswith("ln_"):
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.5, 0.5)
    return model


BUILDERS = {"nanogpt": nanogpt, "gpt2": gpt2, "llama": llama, "bert": bert}


def tokens(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return out if isinstance(out, torch.Tensor) else out.logits


def more_families() -> dict:
    """Other Hugging Face families, each with a pattern of its own: Qwen2 (q/k/v biases, GQA), GPT-NeoX
    (a fused q/k/v projection viewed as heads x 3 x head_dim), OPT (views with the head count read from an
    attribute), Gemma (RMSNorm scaled by 1 + weight, embeddings scaled by a constant)."""
    import transformers as T

    common = {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0,
              "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "max_position_embeddings": 32}  # fmt: skip
    return {
        "qwen2": lambda: T.Qwen2ForCausalLM(T.Qwen2Config(num_key_value_heads=2, intermediate_size=64, **common)),
        "gpt_neox": lambda: T.GPTNeoXForCausalLM(T.GPTNeoXConfig(intermediate_size=64, **common)),
        "opt": lambda: T.OPTForCausalLM(T.OPTConfig(ffn_dim=64, word_embed_proj_dim=32, **common)),
        "gemma_untied": lambda: T.GemmaForCausalLM(T.GemmaConfig(
            num_key_value_heads=2, intermediate_size=64, head_dim=8, tie_word_embeddings=False, **common)),
        "gemma": lambda: T.GemmaForCausalLM(T.GemmaConfig(
            num_key_value_heads=2, intermediate_size=64, head_dim=8, **common)),
    }

"""Benchmark: growth ops on Hugging Face transformers captured with torch.export (GPT-2, Llama, BERT).

For a small-but-real config of each family (4 layers, d_model 128, 4 heads, FFN 512, vocabulary 1000,
random weights built from the config, no download) it times the channel analysis (capture + groups),
widen x2 (stream, heads, FFN), deepen by copying layer 1 and prune 25 % of the heads and FFN units,
and reports each op's max |f_new - f_old| on fresh tokens (widen and deepen must be ~1e-7: exact in
float32; prune is not function-preserving) and the parameter counts.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_transformer_ops.py   # table + results JSON
    ... bench_transformer_ops.py --vit-b16   # also: prune 25 % of a ViT-B/16's heads and FFN units

The ViT-B/16 row (85.8 M parameters, 224x224, random weights from the default ``ViTConfig``) is the
issue's Torch-Pruning comparison point: its magnitude pruner reaches 0.836x parameters at ratio 0.25
(it also prunes the residual stream; netgrow keeps the LayerNorm'd stream and prunes heads and FFN units).

Times are medians over ``--repeats`` runs after one warm-up run (which pays torch.export's one-off
imports), on one intra-op thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import netgrow
from netgrow.graph import analyse

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_transformer_ops.json"
VOCAB = 1000


def families() -> dict[str, tuple[Callable[[], nn.Module], str]]:
    import transformers as T

    logging.getLogger("transformers").setLevel(logging.ERROR)
    ids = {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    return {
        "gpt2": (lambda: T.GPT2LMHeadModel(T.GPT2Config(n_layer=4, n_embd=128, n_head=4, n_positions=128, **ids)),
                 "transformer.h.1"),
        "llama": (lambda: T.LlamaForCausalLM(T.LlamaConfig(
            num_hidden_layers=4, hidden_size=128, num_attention_heads=4, num_key_value_heads=2, intermediate_size=512,
            max_position_embeddings=128, tie_word_embeddings=True, **ids)), "model.layers.1"),
        "bert": (lambda: T.BertForMaskedLM(T.BertConfig(
            num_hidden_layers=4, hidden_size=128, num_attention_heads=4, intermediate_size=512,
            max_position_embeddings=128, vocab_size=VOCAB, pad_token_id=0)), "bert.encoder.layer.1"),
    }  # fmt: skip


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def max_err(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a(x).logits - b(x).logits).abs().max())


def vit_b16(repeats: int) -> dict[str, Any]:
    import transformers as T

    torch.manual_seed(0)
    model = T.ViTForImageClassification(T.ViTConfig()).eval()
    x = torch.randn(1, 3, 224, 224)
    params = sum(p.numel() for p in model.parameters())
    _, t_analyse = timed(lambda: analyse(model, x), 1)
    small, t_prune = timed(lambda: netgrow.prune(model, 0.25, example_input=x, layers="linear"), 1)
    return {"params": params, "analyse_s": t_analyse, "prune_s": t_prune,
            "prune_ratio": sum(p.numel() for p in small.parameters()) / params}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vit-b16", action="store_true", help="also prune a ViT-B/16 by 25 %%")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randint(1, VOCAB, (2, 32))
    fresh = torch.randint(1, VOCAB, (4, 48))
    rows = []
    for name, (make, block) in families().items():
        model = make().eval()
        params = sum(p.numel() for p in model.parameters())
        _, t_analyse = timed(lambda: analyse(model, x), args.repeats)
        wide, t_widen = timed(lambda: netgrow.widen(model, 2.0, example_input=x, seed=0), args.repeats)
        deep, t_deepen = timed(lambda: netgrow.deepen(model, block, example_input=x, kind="copy"), args.repeats)
        small, t_prune = timed(lambda: netgrow.prune(model, 0.25, example_input=x, layers="linear"), args.repeats)
        rows.append({
            "model": name, "params": params, "analyse_s": t_analyse,
            "widen_s": t_widen, "widen_params": sum(p.numel() for p in wide.parameters()),
            "widen_max_err": max_err(model, wide, fresh),
            "deepen_s": t_deepen, "deepen_params": sum(p.numel() for p in deep.parameters()),
            "deepen_max_err": max_err(model, deep, fresh),
            "prune_s": t_prune, "prune_params": sum(p.numel() for p in small.parameters()),
        })  # fmt: skip
    vit = vit_b16(args.repeats) if args.vit_b16 else None
    header = f"{'model':6} {'params':>9} {'analyse':>8} {'widen x2':>9} {'err':>8} {'deepen':>8} {'err':>8} {'prune':>7}"
    print(header)
    for r in rows:
        print(f"{r['model']:6} {r['params']:>9,} {r['analyse_s']:>7.2f}s {r['widen_s']:>8.2f}s {r['widen_max_err']:>8.1e}"
              f" {r['deepen_s']:>7.2f}s {r['deepen_max_err']:>8.1e} {r['prune_s']:>6.2f}s")  # fmt: skip
    if vit is not None:
        print(f"ViT-B/16: {vit['params']:,} params; prune 0.25 (layers='linear') -> {vit['prune_ratio']:.3f}x "
              f"params in {vit['prune_s']:.1f}s (analysis {vit['analyse_s']:.1f}s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": 1, "repeats": args.repeats}  # fmt: skip
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows, "vit_b16": vit}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

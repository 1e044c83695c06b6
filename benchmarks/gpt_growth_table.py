"""The tables of BENCHMARKS.md's GPT-growth section, from ``benchmarks/results/gpt_growth*.json``.

``benchmarks/tables.py`` calls ``main_table``/``gap_table`` for the ``gpt_growth``, ``gpt_growth_gaps`` and
``gpt_growth_long`` blocks (regenerate with ``python benchmarks/tables.py``). Run directly, this prints the
whole section, protocol paragraph included (the paragraph in BENCHMARKS.md is its text at the time of the run):

    python benchmarks/gpt_growth_table.py
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "gpt_growth.json"
LONG = HERE / "results" / "gpt_growth_long.json"  # optional: one seed at a longer budget
START, END = "<!-- gpt_growth:start -->", "<!-- gpt_growth:end -->"

LABELS = {
    "scratch": "scratch 4L·128",
    "depth_copy": "depth 2→4, zero-output copies",
    "depth_stack": "depth 2→4, stacking",
    "width": "width 64→128, heads 2→4, FFN ×2",
    "both": "depth 2→4 + width 64→128",
    "small_scratch": "control: 2L·128 for the whole budget, no growth",
}


def _ms(v: list[float] | None, digits: int = 3, signed: bool = False) -> str:
    if v is None:
        return "—"
    sign = "+" if signed else ""
    return f"{v[0]:{sign}.{digits}f} ± {v[1]:.{digits}f}"


def _target(row: dict[str, Any]) -> str:
    values = row["macs_to_target"]
    if row.get("macs_to_target_ms"):
        return f"{_ms(row['macs_to_target_ms'], 2)}×"
    return ", ".join(f"{v:.2f}×" if isinstance(v, float) else f"{v}×" for v in values) + " (per seed)"


def main_table(payload: dict[str, Any]) -> str:
    """Validation loss at 0.6 B / 0.8 B / B, bits per character, gap at B, MACs to scratch's final loss."""
    lines = [
        "| run | val loss at 0.6 B | at 0.8 B | at B (nats/char) | bits/char at B | gap to scratch at B | MACs to scratch's final val loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in payload["summary"].items():
        at1 = row["val_loss@1.0"]
        bpc = [at1[0] / math.log(2), at1[1] / math.log(2)] if at1 else None
        lines.append(
            f"| {LABELS.get(name, name)} | {_ms(row['val_loss@0.6'])} | {_ms(row['val_loss@0.8'])} | {_ms(at1)} | "
            f"{_ms(bpc)} | {'—' if name == 'scratch' else _ms(row['gap@1.0'], signed=True)} | "
            f"{'1.00× (by definition)' if name == 'scratch' else _target(row)} |"
        )
    return "\n".join(lines)


def gap_table(payload: dict[str, Any]) -> str:
    """Loss gap to scratch (same seed) at each budget."""
    lines = ["| run | at 0.6 B | at 0.8 B | at B |", "|---|---|---|---|"]
    for name, row in payload["summary"].items():
        if name != "scratch":
            lines.append(f"| {LABELS.get(name, name)} | {_ms(row['gap@0.6'], signed=True)} | "
                         f"{_ms(row['gap@0.8'], signed=True)} | {_ms(row['gap@1.0'], signed=True)} |")  # fmt: skip
    return "\n".join(lines)


def protocol(payload: dict[str, Any]) -> str:
    """The paragraph stating the command, model, optimizer, budgets, seeds and machine load."""
    a = payload["args"]
    runs = payload["runs"]
    seeds = sorted({r["seed"] for r in runs})
    scratch = [r for r in runs if r["variant"] == "scratch"]
    m = scratch[0] if scratch else runs[0]
    loads = [r[k] for r in runs for k in ("load_start", "load_end")]
    return (
        f"`PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_gpt_growth.py --seeds {len(seeds)} --steps "
        f"{a['steps']}` → `benchmarks/results/gpt_growth.json`. "
        f"Target: `create(\"gpt\", n_layer=4, n_embd=128, n_head=4, d_ff=512, block_size={a['block']})`, vocabulary "
        f"{m['final_config']['vocab_size']} characters, {m['params']:,} parameters, {m['macs_per_seq']:,} MACs per "
        f"{a['block']}-character sequence (attention products included). AdamW (lr {a['lr']}, betas 0.9/0.99, "
        f"weight decay 0.1 on matrices), batches of {a['batch']} random windows, warmup 5 % then constant; "
        f"growth at step {a['steps'] // 2} with the AdamW moments carried through the ParamMap; width growth with "
        "the function-preserving symmetry-breaking noise 0.1. Every run has scratch's budget B = "
        f"{a['steps']} steps of the target ({m['budget_M']:.3e} forward MACs of training, Eq. 1); a decay branch "
        "(lr linearly to 0 over the last 20 % of the budget) ends at 0.6 B, 0.8 B and B, where the whole "
        f"validation split ({payload.get('val_windows', 1936)} windows, split by fortune) is evaluated. "
        f"Seeds {', '.join(map(str, seeds))} (init, batch order, growth noise); mean ± std. "
        f"Machine: {payload['machine']['platform']}, torch {payload['machine']['torch']}, 1 intra-op thread; load "
        f"average {min(loads):.1f}–{max(loads):.1f} on 2 cores during the runs: "
        f"{a.get('note') or 'other processes ran alongside'}. Wall times are therefore not reported; MACs are "
        "exact counts."
        + "".join(
            f" Added afterwards (same settings): `--seeds {x['seeds']} --steps {x['steps']} --variants {x['variants']} "
            "--append`."
            for x in payload.get("appended", [])
        )
    )


def section(payload: dict[str, Any]) -> str:
    lines = [
        START,
        "## Growing a character-level GPT on the fortunes corpus (issue 11)",
        "",
        protocol(payload),
        "",
        main_table(payload),
        "",
        "Loss gap to scratch at equal MACs (grown − scratch, same seed; negative = growth better):",
        "",
        gap_table(payload),
    ]
    if LONG.is_file():
        long = json.loads(LONG.read_text())
        a = long["args"]
        lines += [
            "",
            f"At {a['steps'] // payload['args']['steps']}× the budget, one seed (`--seeds {a['seeds']} --steps "
            f"{a['steps']} --variants {a['variants']} --out benchmarks/results/gpt_growth_long.json`; growth at step "
            f"{a['steps'] // 2}):",
            "",
            main_table(long),
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    print(section(json.loads(Path(args.results).read_text())))


if __name__ == "__main__":
    main()

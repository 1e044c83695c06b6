"""Cumulative training vs scratch at Fashion-MNIST scale (Feng & Panda, Table 1 / Fig. 3).

Cumulative VGG11 -> VGG16 -> VGG19 on 5 -> 7 -> 10 classes against scratch VGG19 on all 10, both trained
with the same optimiser and the same convergence rule (plateau of test accuracy, patience P, inside an
epoch budget per stage), over several seeds. Reports final accuracy (mean ± std), M and its ratio, the
wall-time ratio, and the compute to target: M and wall time at which each cumulative run first reaches
its seed's scratch final accuracy - 0.5 pp (the paper: iso-accuracy at 0.47-0.77x M; goal here <= 0.5x).

    .venv/bin/python benchmarks/bench_cumulative.py                 # 3 seeds, 15 epochs/stage, width 1/8
    .venv/bin/python benchmarks/bench_cumulative.py --quick         # smoke run (seconds)
"""

from __future__ import annotations

import _common as c

NAME = "cumulative"


def main() -> None:
    p = c.parser(__doc__.splitlines()[0], epochs=15)
    p.add_argument("--patience", type=int, default=3, help="plateau patience in epochs (default 3)")
    p.add_argument("--min-delta", type=float, default=0.001, help="plateau min improvement (default 0.001)")
    args = p.parse_args()
    b = c.Bench(NAME, args)
    stopping = {"rule": "plateau", "patience": args.patience, "min_delta": args.min_delta}
    per_seed = []
    for seed in b.seeds:
        scratch = b.run(f"scratch-s{seed}", {
            "strategy": "scratch", "seed": seed, "data": b.data_section([10], seed),
            "model": {"arch": "vgg19", "width": b.width}, "train": c.train_section(b.epochs, seed=seed),
            "stopping": stopping})
        cum = b.run(f"cumulative-s{seed}", {
            "strategy": "cumulative", "seed": seed, "data": b.data_section([5, 7, 10], seed),
            "model": {"width": b.width}, "train": c.train_section(b.epochs, seed=seed), "stopping": stopping,
            "cumulative": {"archs": ["vgg11", "vgg16", "vgg19"], "epochs": b.epochs}})
        target = c.final_acc(scratch) - 0.005
        hit = c.to_target(cum, target)
        hit_scratch = c.to_target(scratch, target)
        per_seed.append({
            "seed": seed,
            "scratch": {"acc": c.final_acc(scratch), "M": scratch.M_total, "wall": scratch.summary["wall_time_total"],
                        "epochs": scratch.summary["epochs_total"], "to_target": hit_scratch},
            "cumulative": {"acc": c.final_acc(cum), "M": cum.M_total, "wall": cum.summary["wall_time_total"],
                           "epochs": cum.summary["epochs_total"], "to_target": hit,
                           "stages": [{k: s[k] for k in ("arch", "classes", "test_acc", "M", "epochs", "wall_time")}
                                      for s in cum.stages]},
            "M_ratio": cum.M_total / scratch.M_total,
            "wall_ratio": cum.summary["wall_time_total"] / scratch.summary["wall_time_total"],
            "M_to_target_ratio": None if hit is None else hit["M"] / scratch.M_total,
            "wall_to_target_ratio": None if hit is None else hit["wall_time"] / scratch.summary["wall_time_total"],
        })
    col = lambda key, sub=None: [r[key] if sub is None else r[key][sub] for r in per_seed]  # noqa: E731
    rows = [
        ["scratch VGG19", c.fmt_ms(col("scratch", "acc"), 100, suffix="%"), c.fmt_ms(col("scratch", "M"), 1e-12, 3, "T"),
         "1.00x", "1.00x", c.fmt_ms(col("scratch", "epochs"), 1, 1), "-", "-"],
        ["cumulative 11→16→19", c.fmt_ms(col("cumulative", "acc"), 100, suffix="%"),
         c.fmt_ms(col("cumulative", "M"), 1e-12, 3, "T"), c.fmt_ms(col("M_ratio"), suffix="x"),
         c.fmt_ms(col("wall_ratio"), suffix="x"), c.fmt_ms(col("cumulative", "epochs"), 1, 1),
         c.fmt_ms(col("M_to_target_ratio"), suffix="x"), c.fmt_ms(col("wall_to_target_ratio"), suffix="x")],
    ]
    print()
    print(c.table(["run", "final acc", "M", "M ratio", "wall ratio", "epochs", "M to target", "wall to target"], rows))
    print("(to target: first epoch at the same seed's scratch final accuracy - 0.5 pp, relative to scratch's total)")
    c.write_result(NAME, b, {"stopping": stopping, "per_seed": per_seed, "summary": {
        "scratch_acc": c.mean_std(col("scratch", "acc")), "cumulative_acc": c.mean_std(col("cumulative", "acc")),
        "M_ratio": c.mean_std(col("M_ratio")), "wall_ratio": c.mean_std(col("wall_ratio")),
        "M_to_target_ratio": c.mean_std(col("M_to_target_ratio")),
        "wall_to_target_ratio": c.mean_std(col("wall_to_target_ratio")),
        "reached_target": sum(r["M_to_target_ratio"] is not None for r in per_seed)}})


if __name__ == "__main__":
    main()

"""Cumulative training with pruning and the Net2Net zero mask (Feng & Panda, Table 2) at Fashion-MNIST scale.

Cumulative VGG11 -> VGG19 on 5 -> 10 classes with R = 0, with R = 50% (L1 filter pruning of VGG11 before
the expansion: widths shrink) and with R = 50% + zero mask (the zeros of the inserted identity kernels held
at zero while VGG19 trains; MACs skip those zeros; both readings: all zeros, or only the surround taps),
and the kernel-level reading of R (50% of all 2-D conv kernels of VGG11 by L1 zeroed and held at zero
through the next stage, widths kept: the paper's parameter counts imply this one), against scratch VGG19. Reports parameters, MACs per
sample (with skipping), final accuracy and M, each also relative to scratch (Table 2's brackets).

    .venv/bin/python benchmarks/bench_pruning.py
    .venv/bin/python benchmarks/bench_pruning.py --quick
"""

from __future__ import annotations

import _common as c

NAME = "pruning"
VARIANTS = {
    "R=0": {"prune": 0.0},
    "R=50%": {"prune": 0.5},
    "R=50% + zero mask": {"prune": 0.5, "zero_mask": True},
    "R=50% + zero mask (surround only)": {"prune": 0.5, "zero_mask": True, "zero_mask_mode": "surround"},
    "R=50% kernels": {"prune": 0.5, "prune_mode": "kernel"},
    "R=50% kernels + zero mask": {"prune": 0.5, "prune_mode": "kernel", "zero_mask": True},
}
SLUGS = {"R=0": "r0", "R=50%": "r50", "R=50% + zero mask": "r50-zeromask",
         "R=50% + zero mask (surround only)": "r50-zeromask-surround", "R=50% kernels": "r50k",
         "R=50% kernels + zero mask": "r50k-zeromask"}


def main() -> None:
    p = c.parser(__doc__.splitlines()[0], epochs=15)
    p.add_argument("--ratio", type=float, default=0.5, help="pruning ratio R for the pruned variants (default 0.5)")
    args = p.parse_args()
    b = c.Bench(NAME, args)
    per_seed = []
    for seed in b.seeds:
        tr = c.train_section(b.epochs, seed=seed)
        scratch = b.run(f"scratch-s{seed}", {"strategy": "scratch", "seed": seed, "data": b.data_section([10], seed),
                                            "model": {"arch": "vgg19", "width": b.width}, "train": tr})
        base = {"params": scratch.summary["final"]["params"], "macs": scratch.summary["final"]["macs_per_sample"],
                "acc": c.final_acc(scratch), "M": scratch.M_total}
        row = {"seed": seed, "scratch": base}
        for label, opts in VARIANTS.items():
            opts = {**opts, "prune": args.ratio if opts["prune"] else 0.0}
            slug = SLUGS[label]
            run = b.run(f"{slug}-s{seed}", {
                "strategy": "cumulative", "seed": seed, "data": b.data_section([5, 10], seed),
                "model": {"width": b.width}, "train": tr,
                "cumulative": {"archs": ["vgg11", "vgg19"], "epochs": b.epochs, **opts}})
            last = run.stages[-1]
            macs = last.get("macs_per_sample_masked", last["macs_per_sample"])
            params = last.get("params_nonzero", last["params"])  # zero mask: the masked zeros are not kept
            row[label] = {"params": params, "macs": macs, "acc": c.final_acc(run), "M": run.M_total,
                          "params_ratio": params / base["params"], "macs_ratio": macs / base["macs"],
                          "M_ratio": run.M_total / base["M"], "acc_delta_pp": 100 * (c.final_acc(run) - base["acc"])}
        per_seed.append(row)
    rows = [["scratch VGG19", c.fmt_ms([r["scratch"]["params"] for r in per_seed], 1e-6, 3, "M"),
             c.fmt_ms([r["scratch"]["macs"] for r in per_seed], 1e-6, 2, "M"),
             c.fmt_ms([r["scratch"]["acc"] for r in per_seed], 100, suffix="%"),
             c.fmt_ms([r["scratch"]["M"] for r in per_seed], 1e-12, 3, "T")]]
    for label in VARIANTS:
        rs = [r[label] for r in per_seed]
        rows.append([f"cumulative {label}",
                     f"{c.fmt_ms([x['params'] for x in rs], 1e-6, 3, 'M')} ({c.fmt_ms([x['params_ratio'] for x in rs])}x)",
                     f"{c.fmt_ms([x['macs'] for x in rs], 1e-6, 2, 'M')} ({c.fmt_ms([x['macs_ratio'] for x in rs])}x)",
                     f"{c.fmt_ms([x['acc'] for x in rs], 100, suffix='%')} ({c.fmt_ms([x['acc_delta_pp'] for x in rs])} pp)",
                     f"{c.fmt_ms([x['M'] for x in rs], 1e-12, 3, 'T')} ({c.fmt_ms([x['M_ratio'] for x in rs])}x)"])
    print()
    print(c.table(["run", "#params", "#MACs/sample", "accuracy", "M"], rows))
    c.write_result(NAME, b, {"ratio": args.ratio, "per_seed": per_seed})


if __name__ == "__main__":
    main()

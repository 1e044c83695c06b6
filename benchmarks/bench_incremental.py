"""Incremental training vs scratch, look-ahead vs random initialisation (Istrate et al., Table 2, Figs. 3-4).

The target network (default VGG16 at width 1/8 on Fashion-MNIST) is partitioned by width into sub-networks
and grown when the angle criterion fires (window ws, threshold gamma), with look-ahead or random
initialisation of each new sub-network; the scratch baseline trains the target with the same optimiser and
the same angle rule as its convergence criterion. Reports final accuracy (mean ± std over seeds), M and its
ratio, the compute to target (first epoch at scratch's final accuracy - 0.5 pp; the paper: VGG at equal
accuracy with 0.57x the FLOPs), M to fixed accuracies (``--fixed``, the paper's Fig. 3) as a ratio to
scratch's own M to the same accuracy, and accuracy vs parameters after every phase (Fig. 4). The angle
criterion reads the 10 % validation split (``[data] val_fraction``), never the test set; the optimiser is
the paper's RMSProp at a constant rate.

    .venv/bin/python benchmarks/bench_incremental.py --arch vgg16        # 3 seeds
    .venv/bin/python benchmarks/bench_incremental.py --quick
"""

from __future__ import annotations

import _common as c

NAME = "incremental"


def main() -> None:
    p = c.parser(__doc__.splitlines()[0], epochs=20)
    p.add_argument("--arch", default="vgg16", help="target network (default vgg16; resnet20..56 work too)")
    p.add_argument("--ws", type=int, default=3, help="angle-criterion window in epochs (default 3)")
    p.add_argument("--gamma", type=float, default=0.5, help="angle-criterion threshold (default 0.5)")
    p.add_argument("--lookahead-epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3, help="RMSProp learning rate, constant (paper: 1e-4 on CIFAR)")
    p.add_argument("--fixed", default="0.85,0.88,0.9", help="fixed test accuracies for M-to-accuracy (Fig. 3)")
    p.add_argument("--init", default="he", choices=("default", "he"), help="weight init (paper: He; default he)")
    args = p.parse_args()
    b = c.Bench(NAME, args)
    train = c.train_section(b.epochs, optimizer="rmsprop", lr=args.lr, momentum=0.9, weight_decay=1e-4,
                            schedule="constant")
    ws = 2 if b.quick else args.ws
    fixed = [float(v) for v in args.fixed.split(",") if v.strip()]
    per_seed = []
    for seed in b.seeds:
        tr = {**train, "seed": seed}
        scratch = b.run(f"scratch-s{seed}", {
            "strategy": "scratch", "seed": seed, "data": b.data_section(None, seed),
            "model": {"arch": args.arch, "width": b.width, "init": args.init}, "train": tr,
            "stopping": {"rule": "angle", "ws": ws, "gamma": args.gamma}})
        target = c.final_acc(scratch) - 0.005
        scratch_fixed = {f"{a:g}": c.to_target(scratch, a) for a in fixed}
        row = {"seed": seed, "scratch": {"acc": c.final_acc(scratch), "M": scratch.M_total,
                                         "params": scratch.summary["final"]["params"],
                                         "epochs": scratch.summary["epochs_total"], "M_to_fixed": {
                                             k: None if h is None else h["M"] for k, h in scratch_fixed.items()}}}
        for init in ("lookahead", "random"):
            run = b.run(f"{init}-s{seed}", {
                "strategy": "incremental", "seed": seed, "data": b.data_section(None, seed),
                "model": {"arch": args.arch, "width": b.width, "init": args.init}, "train": tr,
                "incremental": {"init": init, "ws": ws, "gamma": args.gamma, "max_epochs": b.epochs,
                                "lookahead_epochs": args.lookahead_epochs}})
            hit = c.to_target(run, target)
            run_fixed = {f"{a:g}": c.to_target(run, a) for a in fixed}
            row[init] = {"acc": c.final_acc(run), "M": run.M_total, "M_ratio": run.M_total / scratch.M_total,
                         "epochs": run.summary["epochs_total"], "to_target": hit,
                         "M_to_target_ratio": None if hit is None else hit["M"] / scratch.M_total,
                         "accuracy_vs_params": run.summary.get("extra", {}).get("accuracy_vs_params"),
                         "phase_epochs": [s["epochs"] for s in run.stages],
                         "M_to_fixed": {k: None if h is None else h["M"] for k, h in run_fixed.items()},
                         "M_to_fixed_ratio": {k: None if h is None or scratch_fixed[k] is None
                                              else h["M"] / scratch_fixed[k]["M"] for k, h in run_fixed.items()}}
        per_seed.append(row)
    rows = [["scratch " + args.arch, c.fmt_ms([r["scratch"]["acc"] for r in per_seed], 100, suffix="%"),
             c.fmt_ms([r["scratch"]["M"] for r in per_seed], 1e-12, 3, "T"), "1.00x",
             c.fmt_ms([r["scratch"]["epochs"] for r in per_seed], 1, 1), "-"]]
    for init in ("lookahead", "random"):
        rs = [r[init] for r in per_seed]
        rows.append([f"incremental ({init})", c.fmt_ms([x["acc"] for x in rs], 100, suffix="%"),
                     c.fmt_ms([x["M"] for x in rs], 1e-12, 3, "T"), c.fmt_ms([x["M_ratio"] for x in rs], suffix="x"),
                     c.fmt_ms([x["epochs"] for x in rs], 1, 1), c.fmt_ms([x["M_to_target_ratio"] for x in rs], suffix="x")])
    print()
    print(c.table(["run", "final acc", "M", "M ratio", "epochs", "M to target"], rows))
    print("\naccuracy vs parameters (seed %d, look-ahead):" % per_seed[0]["seed"])
    for pt in per_seed[0]["lookahead"]["accuracy_vs_params"] or []:
        print(f"  S1..S{pt['subnetworks']}: {pt['params']:>9,d} params  {100 * pt['test_acc']:.2f}%")
    c.write_result(NAME, b, {"arch": args.arch, "ws": ws, "gamma": args.gamma, "train": train, "per_seed": per_seed,
                             "summary": {k: {"acc": c.mean_std([r[k]["acc"] for r in per_seed]),
                                             "M_ratio": c.mean_std([r[k].get("M_ratio", 1.0) for r in per_seed]),
                                             "M_to_target_ratio": c.mean_std([r[k].get("M_to_target_ratio")
                                                                              for r in per_seed])}
                                         for k in ("scratch", "lookahead", "random")}})


if __name__ == "__main__":
    main()

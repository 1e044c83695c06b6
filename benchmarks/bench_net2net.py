"""Net2Net students vs the paper's baselines (Chen et al., sections 3.2-3.3, Figs. 4-5) at Fashion-MNIST scale.

Wider: a VGG11 teacher at width w/2 grown to width w by Net2WiderNet (noise on: ``--noise`` times each
weight tensor's std on the copies) and by random pad; deeper: a VGG11 teacher at width w deepened to VGG19
by Net2DeeperNet. Each student trains at ``lr_factor`` x the teacher's lr for every factor of
``--lr-factors`` (the paper: about 1/10). The reference is the student architecture from random
initialisation trained **to convergence** (validation plateau, patience ``--patience``, inside
``--ref-epochs``); its final test accuracy is the target. Reported: minibatches (optimizer steps, checked
at every epoch end) until each run first reaches the target, and the ratio to random init's own
minibatches to reach it (the paper: about half).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_net2net.py            # 3 seeds
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_net2net.py --quick    # smoke run
"""

from __future__ import annotations

from typing import Any

import _common as c

NAME = "net2net"


def batches_to_target(run: c.Run, target: float) -> dict[str, Any] | None:
    """First epoch end of the run's last stage (the student) with test accuracy >= target: its minibatches."""
    last = max(int(r.get("stage", 0)) for r in run.epochs)
    for r in (r for r in run.epochs if int(r.get("stage", 0)) == last):
        if r.get("test_acc") is not None and r["test_acc"] >= target:
            return {"batches": int(r["step"]), "epoch": int(r["epoch"]), "student_M": float(r.get("stage_M", 0))}
    return None


def main() -> None:
    p = c.parser(__doc__.splitlines()[0], epochs=10)
    p.add_argument("--teacher-epochs", type=int, default=None, help="teacher budget (default: --epochs)")
    p.add_argument("--ref-epochs", type=int, default=30, help="cap of the random-init reference (default 30)")
    p.add_argument("--patience", type=int, default=3, help="validation plateau patience of the reference")
    p.add_argument("--lr-factors", default="0.1,0.333,1", help="student lr / teacher lr (default 0.1,0.333,1)")
    p.add_argument("--noise", type=float, default=0.01, help="Net2WiderNet noise, fraction of the weights' std")
    args = p.parse_args()
    b = c.Bench(NAME, args)
    t_epochs = args.teacher_epochs or b.epochs
    ref_epochs = 1 if b.quick else args.ref_epochs
    factors = [float(f) for f in args.lr_factors.split(",")]
    w = b.width
    growths = {
        "wider": ({"teacher_arch": "vgg11", "teacher_width": w / 2, "student_arch": "vgg11", "student_width": w},
                  ["net2net", "random_pad"]),
        "deeper": ({"teacher_arch": "vgg11", "teacher_width": w, "student_arch": "vgg19", "student_width": w},
                   ["net2net"]),
    }
    results: dict[str, Any] = {}
    for kind, (arch, methods) in growths.items():
        per_seed = []
        for seed in b.seeds:
            base = {"strategy": "net2net", "seed": seed, "data": b.data_section(None, seed)}
            ref = b.run(f"{kind}-random_init-s{seed}", {
                **base, "train": c.train_section(ref_epochs, seed=seed, schedule="wsd", plateau_patience=args.patience,
                                                 decay_epochs=1, plateau_min_delta=0.001),
                "net2net": {**arch, "baseline": "random_init", "student_epochs": ref_epochs}})
            target = c.final_acc(ref)
            row: dict[str, Any] = {"seed": seed, "target": target, "random_init": {
                "acc": target, "to_target": batches_to_target(ref, target), "M": ref.M_total,
                "student_M": ref.stages[-1]["M"], "epochs": ref.summary["epochs_total"]}}
            for method in methods:
                for f in factors:
                    label = f"{method}@{f:g}"
                    r = b.run(f"{kind}-{method}-lr{f:g}-s{seed}", {
                        **base, "train": c.train_section(b.epochs, seed=seed),
                        "net2net": {**arch, "baseline": method, "lr_factor": f, "noise": args.noise,
                                    "teacher_epochs": t_epochs, "student_epochs": b.epochs}})
                    row[label] = {"acc": c.final_acc(r), "to_target": batches_to_target(r, target), "M": r.M_total,
                                  "student_M": r.stages[-1]["M"], "lr_factor": f, "method": method}
            ref_b = row["random_init"]["to_target"]["batches"] if row["random_init"]["to_target"] else None
            for k, v in row.items():
                if isinstance(v, dict) and v.get("to_target") and ref_b:
                    v["batches_ratio"] = v["to_target"]["batches"] / ref_b
            per_seed.append(row)
        results[kind] = per_seed
    rows = []
    for kind, per_seed in results.items():
        for label in [k for k in per_seed[0] if isinstance(per_seed[0][k], dict)]:
            rs = [r[label] for r in per_seed]
            batches = [None if x["to_target"] is None else x["to_target"]["batches"] for x in rs]
            rows.append([kind, label, c.fmt_ms([x["acc"] for x in rs], 100, suffix="%"), c.fmt_ms(batches, 1, 0),
                         c.fmt_ms([x.get("batches_ratio") for x in rs], suffix="x")])
    print()
    print(c.table(["growth", "run", "final acc", "minibatches to target", "ratio to random init"], rows))
    c.write_result(NAME, b, {"teacher_epochs": t_epochs, "ref_epochs": ref_epochs, "lr_factors": factors,
                             "noise": args.noise, "to_target_unit": "batches", "results": results})


if __name__ == "__main__":
    main()

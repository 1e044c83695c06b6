"""Net2Net students vs the paper's baselines (Chen et al., sections 3.2-3.3, Figs. 4-5) at Fashion-MNIST scale.

Wider: a VGG11 teacher at width w/2 grown to width w by Net2WiderNet, by random pad, and the width-w VGG11
from random initialisation. Deeper: a VGG11 teacher at width w deepened to VGG19 by Net2DeeperNet, and VGG19
from random initialisation. Students train with the teacher's lr / 10 (appendix A), random-init models with
the full lr, all for the same epoch budget. Reports final accuracy and the student epochs (and student M)
until each run first reaches the random-init model's final accuracy (the paper: about half the time).

    .venv/bin/python benchmarks/bench_net2net.py
    .venv/bin/python benchmarks/bench_net2net.py --quick
"""

from __future__ import annotations

from typing import Any

import _common as c

NAME = "net2net"


def student_to_target(run: c.Run, target: float) -> dict[str, Any] | None:
    """First epoch of the student stage (the run's last stage) with test accuracy >= target."""
    last = max(int(r.get("stage", 0)) for r in run.epochs)
    rows = [r for r in run.epochs if int(r.get("stage", 0)) == last]
    for r in rows:
        if r.get("test_acc") is not None and r["test_acc"] >= target:
            return {"epoch": int(r["epoch"]), "student_M": float(r.get("stage_M", 0))}
    return None


def main() -> None:
    p = c.parser(__doc__.splitlines()[0], epochs=10)
    p.add_argument("--teacher-epochs", type=int, default=None, help="teacher budget (default: --epochs)")
    args = p.parse_args()
    b = c.Bench(NAME, args)
    t_epochs = args.teacher_epochs or b.epochs
    w = b.width
    experiments = {
        "wider": [("net2net", {"teacher_arch": "vgg11", "teacher_width": w / 2, "student_arch": "vgg11", "student_width": w}),
                  ("random_pad", {"teacher_arch": "vgg11", "teacher_width": w / 2, "student_arch": "vgg11",
                                  "student_width": w, "baseline": "random_pad"}),
                  ("random_init", {"teacher_arch": "vgg11", "teacher_width": w / 2, "student_arch": "vgg11",
                                   "student_width": w, "baseline": "random_init"})],
        "deeper": [("net2net", {"teacher_arch": "vgg11", "teacher_width": w, "student_arch": "vgg19", "student_width": w}),
                   ("random_init", {"teacher_arch": "vgg11", "teacher_width": w, "student_arch": "vgg19",
                                    "student_width": w, "baseline": "random_init"})],
    }
    results: dict[str, Any] = {}
    for kind, variants in experiments.items():
        per_seed = []
        for seed in b.seeds:
            runs = {}
            for label, opts in variants:
                runs[label] = b.run(f"{kind}-{label}-s{seed}", {
                    "strategy": "net2net", "seed": seed, "data": b.data_section(None, seed),
                    "train": c.train_section(b.epochs, seed=seed),
                    "net2net": {**opts, "teacher_epochs": t_epochs, "student_epochs": b.epochs}})
            target = c.final_acc(runs["random_init"])
            per_seed.append({"seed": seed, "target": target, **{
                label: {"acc": c.final_acc(r), "to_target": student_to_target(r, target), "M": r.M_total,
                        "student_M": r.stages[-1]["M"]} for label, r in runs.items()}})
        results[kind] = per_seed
    rows = []
    for kind, per_seed in results.items():
        for label, _ in experiments[kind]:
            rs = [r[label] for r in per_seed]
            epochs = [None if x["to_target"] is None else x["to_target"]["epoch"] for x in rs]
            rows.append([kind, label, c.fmt_ms([x["acc"] for x in rs], 100, suffix="%"), c.fmt_ms(epochs, 1, 1),
                         c.fmt_ms([x["student_M"] for x in rs], 1e-12, 3, "T")])
    print()
    print(c.table(["growth", "student", "final acc", "student epochs to random-init final acc", "student M"], rows))
    c.write_result(NAME, b, {"teacher_epochs": t_epochs, "results": results})


if __name__ == "__main__":
    main()

"""Regenerate every table of BENCHMARKS.md from the JSON in benchmarks/results/ (no table is typed by hand).

A table lives between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` in BENCHMARKS.md; NAME is a
generator below (one per result file). ``--check`` exits 1 when a table differs from what its JSON gives
(the test suite runs it), so a table edited by hand, or a result rerun without regenerating, is caught.

    python benchmarks/tables.py           # rewrite the tables in place
    python benchmarks/tables.py --check   # verify only
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC = HERE.parent / "BENCHMARKS.md"
sys.path.insert(0, str(HERE.parent / "src"))


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def ms(values: Sequence[float | None], scale: float = 1.0, digits: int = 2, suffix: str = "") -> str:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return "never"
    m = statistics.fmean(vals) * scale
    missing = len(values) - len(vals)
    tail = f" ({missing} never)" if missing else ""
    if len(vals) == 1:  # one seed: no spread to show
        return f"{m:.{digits}f}{suffix}{tail}"
    s = statistics.stdev(vals) * scale
    return f"{m:.{digits}f} ± {s:.{digits}f}{suffix}{tail}"


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 100 * 2**20 else f"{n / 2**20:.1f} MiB"


def ms_time(s: float) -> str:
    return f"{1000 * s:.1f} ms" if s < 0.1 else f"{1000 * s:.0f} ms"


# ------------------------------------------------------------------------------------------------ generators
def t_ops() -> str:
    d = load("bench_ops.json")
    names = {"deepcopy": "`copy.deepcopy` (the floor)", "widen x1.5 (verify=False)":
             "widen ×1.5, every hidden group, `verify=False`", "widen x1.5 (verify=True)":
             "widen ×1.5, `verify=True` (default)", "deepen (verify=False)":
             "deepen (one identity conv block), `verify=False`", "deepen (verify=True)": "deepen, `verify=True`"}
    rows = [[names.get(r["op"], r["op"]), ms_time(r["seconds"]), f"{r['time_vs_deepcopy']:.2f}",
             f"{r['time_vs_deepcopy_per_output_byte']:.2f}", mib(r["peak_bytes"]), f"{r['peak_vs_model_bytes']:.2f}"]
            for r in d["rows"]]
    return table(["op", "time", "× deepcopy", "× deepcopy per output byte", "peak memory", "× model bytes"], rows)


def t_trainer() -> str:
    d = load("bench_trainer.json")
    rows = []
    for key in ("threads_2", "threads_1"):
        r = d.get(key)
        if r is None:
            continue
        rows.append(_trainer_row(r))
    if not rows:
        rows.append(_trainer_row(d))
    return table(["threads", "plain loop, images/s (median / best)", "Trainer (median / best)",
                  "Trainer ÷ plain (median / best)", "Trainer + a 256-image eval every epoch (÷ plain, median)"], rows)


def _trainer_row(r: dict[str, Any]) -> list[str]:
    med, best = r["median_images_per_s"], r["best_images_per_s"]
    threads = r.get("machine", {}).get("threads", r.get("threads", "?"))
    return [str(threads), f"{med['plain']:,.0f} / {best['plain']:,.0f}", f"{med['trainer']:,.0f} / {best['trainer']:,.0f}",
            f"{r['ratio_trainer_vs_plain_median']:.3f} / {r['ratio_trainer_vs_plain_best']:.3f}",
            f"{r['ratio_trainer_eval_vs_plain_median']:.3f}"]


def t_cumulative() -> str:
    d = load("cumulative.json")
    ps = d["per_seed"]
    col = lambda k, sub=None: [r[k] if sub is None else r[k][sub] for r in ps]  # noqa: E731
    ep = lambda run: " + ".join(str(s["epochs"]) for s in ps[0][run].get("stages", [])) or str(ps[0][run]["epochs"])  # noqa: E731
    rows = [
        ["scratch VGG19", ms(col("scratch", "acc"), 100, suffix=" %"), ms(col("scratch", "M"), 1e-12, 3, " T"), "1.00×",
         "1.00×", ep("scratch"), ms([r["scratch"]["to_target"]["M"] / r["scratch"]["M"] if r["scratch"]["to_target"]
                                     else None for r in ps], suffix="×"), "-"],
        ["cumulative 11→16→19", ms(col("cumulative", "acc"), 100, suffix=" %"), ms(col("cumulative", "M"), 1e-12, 3, " T"),
         ms(col("M_ratio"), suffix="×"), ms(col("wall_ratio"), suffix="×"), ep("cumulative"),
         f"**{ms(col('M_to_target_ratio'), suffix='×')}**", ms(col("wall_to_target_ratio"), suffix="×")],
    ]
    return table(["run", "final accuracy", "M (Eq. 1)", "M ratio", "wall ratio", "epochs", "M to target",
                  "wall to target"], rows)


def t_analysis() -> str:
    d = load("bench_analysis.json")
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
    rows = [[f"{r['eps']:g}", pct(r.get("mi")), pct(r.get("mi_defer")), pct(r.get("final")), pct(r.get("baseline"))]
            for r in d["table3"]]
    return table(["ε", "MI, every model votes", "MI, defer (see below)", "final model alone", "scratch VGG19"], rows)


def t_pruning() -> str:
    d = load("pruning.json")
    r0 = d["per_seed"][0]
    labels = {"scratch": "scratch VGG19", "R=0": "cumulative, R = 0", "R=50%": "cumulative, R = 50 % before expansion",
              "R=50% + zero mask": "R = 50 % + Net2Net zero mask kept",
              "R=50% + zero mask (surround only)": "R = 50 % + zero mask, surround taps only",
              "R=50% kernels": "R = 50 % of 2-D kernels (kernel level, widths kept)",
              "R=50% kernels + zero mask": "R = 50 % of kernels + zero mask"}
    rows = []
    for key, label in labels.items():
        if key not in r0:
            continue
        vals = [p[key] for p in d["per_seed"]]
        if key == "scratch":
            rows.append([label, f"{vals[0]['params'] / 1e3:.1f} K (1×)", f"{vals[0]['macs'] / 1e6:.2f} M (1×)",
                         ms([v["acc"] for v in vals], 100, suffix=" %"), f"{vals[0]['M'] / 1e12:.3f} T (1×)"])
        else:
            rows.append([label, f"{vals[0]['params'] / 1e3:.1f} K ({vals[0]['params_ratio']:.2f}×)",
                         f"{vals[0]['macs'] / 1e6:.2f} M ({vals[0]['macs_ratio']:.2f}×)",
                         f"{ms([v['acc'] for v in vals], 100, suffix=' %')} ({ms([v['acc_delta_pp'] for v in vals], suffix=' pp')})",
                         f"{ms([v['M'] for v in vals], 1e-12, 3, ' T')} ({ms([v['M_ratio'] for v in vals], suffix='×')})"])
    return table(["run", "parameters (non-zero)", "MACs/sample (zeros skipped)", "accuracy", "M"], rows)


def t_pruning_counts() -> str:
    d = load("pruning_counts.json")
    rows = []
    for label, r in d["rows"].items():
        paper = r.get("paper")
        rows.append([label, f"{r['params'] / 1e3:.1f} K ({r['params_ratio']:.2f}×)",
                     f"{r['macs'] / 1e6:.2f} M ({r['macs_ratio']:.2f}×)",
                     "-" if not paper else f"{paper['params']:.2f}× / {paper['macs']:.2f}×"])
    return table(["reading", "non-zero parameters (× scratch VGG19)", "MACs/sample, zeros skipped (× scratch)",
                  "Table 2 (params / MACs)"], rows)


def t_incremental() -> str:
    d = load("incremental.json")
    ps = d["per_seed"]
    fixed = sorted(ps[0]["scratch"].get("M_to_fixed", {}), key=float)

    def to_fixed(p: dict[str, Any], key: str, a: str) -> float | None:
        return p[key]["M_to_fixed_ratio"].get(a) if key != "scratch" else (1.0 if p[key]["M_to_fixed"][a] else None)

    def fixed_cells(key: str) -> list[str]:  # "never" / "(k never)": seeds that did not reach it
        return [ms([to_fixed(p, key, a) for p in ps], suffix="×") for a in fixed]

    rows = [["scratch " + d["arch"].upper(), ms([p["scratch"]["acc"] for p in ps], 100, suffix=" %"),
             ms([p["scratch"]["M"] for p in ps], 1e-12, 3, " T"), "1.00×",
             ms([p["scratch"]["epochs"] for p in ps], digits=1), "-", *fixed_cells("scratch")]]
    for key, label in (("lookahead", "incremental, look-ahead init"), ("random", "incremental, random init")):
        rows.append([label, ms([p[key]["acc"] for p in ps], 100, suffix=" %"), ms([p[key]["M"] for p in ps], 1e-12, 3, " T"),
                     ms([p[key]["M_ratio"] for p in ps], suffix="×"), ms([p[key]["epochs"] for p in ps], digits=1),
                     ms([p[key]["M_to_target_ratio"] for p in ps], suffix="×"), *fixed_cells(key)])
    return table(["run", "final accuracy", "M", "M ratio", "epochs", "M to target (scratch final − 0.5 pp, ÷ scratch's M)",
                  *[f"M to {100 * float(a):g} % (÷ scratch's)" for a in fixed]], rows)


def t_net2net() -> str:
    d = load("net2net.json")
    rows = []
    base = {"net2net": {"wider": "Net2WiderNet", "deeper": "Net2DeeperNet"}, "random_pad": "random pad",
            "random_init": "random init (reference)"}
    batches = d.get("to_target_unit") == "batches"
    for growth, seeds in d["results"].items():
        for key in [k for k, v in seeds[0].items() if isinstance(v, dict)]:
            method, _, factor = key.partition("@")
            name = base.get(method, method)
            name = name[growth] if isinstance(name, dict) else name
            if factor:
                name += f", lr × {factor}"
            accs = [s[key]["acc"] for s in seeds]
            hits = [s[key]["to_target"] for s in seeds]
            reached = [h for h in hits if h is not None]
            if reached:
                to = ms([None if h is None else h["batches"] if batches else h["epoch"] for h in hits], digits=0)
            else:
                to = f"not reached in {d.get('epochs', '?')} epochs"
            row = [growth, name, ms(accs, 100, suffix=" %"), to]
            if batches:
                row.append(ms([s[key].get("batches_ratio") for s in seeds], suffix="×"))
            rows.append(row + [ms([s[key]["student_M"] for s in seeds], 1e-12, 3, " T")])
    unit = "minibatches" if batches else "epochs"
    head = ["growth", "student", "final accuracy", f"{unit} until the random-init model's final accuracy"]
    head += ["÷ random init's"] if batches else []
    return table(head + ["student M"], rows)


def _frontier_extend() -> dict[str, Any]:
    """More last-stage budgets of the frontier's runs (bench_frontier_extend.py), by seed and method."""
    return load("frontier_extend.json")["per_seed"] if (RESULTS / "frontier_extend.json").is_file() else {}


def _points(d: dict[str, Any], key: str, method: str | None = None, extend: bool = False) -> list[dict[str, Any]]:
    """The frontier points of ``d["per_seed"][i][key]`` (``extend``: plus frontier_extend.json's, which extends
    frontier.json) as analysis.frontier.aggregate takes them, under the name ``method`` (default ``key``)."""
    extra = _frontier_extend() if extend else {}
    return [{"method": method or key, "budget": f"{p['stable']}+{p['decay']}", "seed": r["seed"], "M": p["M"],
             "test_acc": p["test_acc"]}
            for r in d["per_seed"] for p in r[key] + extra.get(str(r["seed"]), {}).get(key, [])]


def _frontier() -> tuple[dict[str, Any], Any, Any]:
    from netgrow.analysis.frontier import aggregate, targets

    d = load("frontier.json")
    fr = aggregate(_points(d, "scratch", extend=True) + _points(d, "cumulative", extend=True))
    return d, fr, targets(fr, "scratch", deltas=(0.005, 0.01))


LABELS = {"scratch": "scratch VGG19", "cumulative": "cumulative 11→16→19"}


def _frontier_md(which: int, study: bool = False) -> str:
    """Table ``which`` of frontier_markdown (0: the points, 1: the targets) of the frontier or the stage-count study."""
    from netgrow.analysis.frontier import frontier_markdown

    fr, rows, labels = _stage_count() if study else (*_frontier()[1:], LABELS)
    return frontier_markdown(fr, rows, labels)[which].rstrip()


def t_frontier_points() -> str:
    return _frontier_md(0)


def t_frontier_targets() -> str:
    return _frontier_md(1)


def t_frontier_stages() -> str:
    d = load("frontier.json")
    rows = []
    for r in d["per_seed"]:
        st = r["cumulative_stages"]
        why = {"schedule": "val plateau", "budget": "cap"}
        rows.append([r["seed"], *[f"{s['epochs']} ({why.get(s['stopped_by'], s['stopped_by'])}), "
                                  f"val {100 * s['val_acc']:.2f} %, {s['M'] / 1e12:.3f} T" for s in st]])
    return table(["seed", "stage 0: VGG11, 5 classes (epochs, why it stopped, val acc, M)", "stage 1: VGG16, 7 classes"],
                 rows)


STAGE_COUNT = {"5-7-10": "cumulative 11→16→19, 5→7→10", "5-10": "cumulative 11→19, 5→10",
               "3-7-10": "cumulative 11→16→19, 3→7→10"}


def _stage_count_studies() -> dict[str, Any]:
    """The stage-count results present, by schedule key (stage_count_<key>.json)."""
    return {k: load(f"stage_count_{k}.json") for k in STAGE_COUNT if (RESULTS / f"stage_count_{k}.json").is_file()}


def _stage_count() -> tuple[Any, Any, dict[str, str]]:
    """The stage-count study: the cumulative runs of stage_count_<schedule>.json (one code version, the same
    seeds, split and last-stage budgets) against frontier.json's scratch runs (the same seeds and split)."""
    from netgrow.analysis.frontier import aggregate, targets

    studies = _stage_count_studies()
    if not studies:
        raise FileNotFoundError(2, "no stage-count result", str(RESULTS / "stage_count_5-10.json"))
    pts = _points(load("frontier.json"), "scratch", extend=True)
    for key, st in studies.items():
        pts += _points(st, "cumulative", key)
    fr = aggregate(pts)
    return fr, targets(fr, "scratch", deltas=(0.005, 0.01)), {"scratch": "scratch VGG19", **STAGE_COUNT}


def t_stage_count_points() -> str:
    return _frontier_md(0, study=True)


def t_stage_count_targets() -> str:
    return _frontier_md(1, study=True)


def t_stage_count_stages() -> str:
    why = {"schedule": "plateau", "budget": "cap"}
    rows = []
    for key, study in _stage_count_studies().items():
        for r in study["per_seed"]:
            st = r["cumulative_stages"]
            early = "; ".join(f"{a} on {k} classes: {s['epochs']} ep ({why.get(s['stopped_by'], s['stopped_by'])}), "
                              f"val {100 * s['val_acc']:.2f} %"
                              for a, k, s in zip(r["archs"], r["schedule"], st))
            rows.append([STAGE_COUNT[key], r["seed"], early, f"{sum(s['M'] for s in st) / 1e12:.3f} T"])
    return table(["schedule", "seed", "stages before the last", "their M"], rows)


def pm(v: dict[str, float], suffix: str = "") -> str:
    """A fraction's ``{"mean", "std"}`` summary (bench_mi.py) in percent."""
    return f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f}{suffix}"


def t_mi() -> str:
    d = load("mi_robustness.json")["summary"]
    names = {"final": "final model alone", "mi": "MI, hard vote", "mi_defer": "MI, defer", "mi_soft": "MI, soft vote",
             "baseline": "scratch VGG19"}
    gain = lambda v: f"{v['mean']:+.2f} ± {v['std']:.2f}"  # noqa: E731
    rows = [["clean", *[f"{pm(d['clean'][k])} ({gain(d['clean_gain_pp'][k])})" if k != "final" else pm(d["clean"][k])
                        for k in names]]]
    for r in d["fgsm"]:
        if r["eps"] == 0:
            continue
        rows.append([f"FGSM ε = {r['eps']:g}", *[f"{pm(r[k])} ({gain(r[k + '_gain_pp'])})" if k != "final" else pm(r[k])
                                                  for k in names]])
    return table(["test set (accuracy %, in brackets: pp over the final model)", *names.values()], rows)


def t_robustness() -> str:
    d = load("mi_robustness.json")
    s = d["summary"]
    b = d["bands"]
    rows = []
    for key, label in (("noise_small", f"Gaussian noise, small σ (0 < σ ≤ {b['small_sigma_max']:g})"),
                       ("noise_large", f"Gaussian noise, large σ (σ ≥ {b['large_sigma_min']:g})"),
                       ("ablation_mean", "ablation, fraction 0–0.9 of conv units")):
        g = s[key]["grown_minus_baseline_pp"]
        rows.append([label, pm(s[key]["grown"], " %"), pm(s[key]["baseline"], " %"), f"{g['mean']:+.2f} ± {g['std']:.2f}"])
    return table(["perturbation (mean accuracy over the levels)", "grown (cumulative)", "scratch VGG19",
                  "grown − scratch (pp)"], rows)


def t_mi_detection() -> str:
    d = load("mi_robustness.json")
    names = {"final": "final model alone", "mi": "MI, hard vote", "mi_defer": "MI, defer", "mi_soft": "MI, soft vote"}
    rows = []
    for test_set, label in (("clean", "clean"), ("adversarial", "FGSM ε = 0.05")):
        rows.append([label, *[ms([s["tnr_at_val_threshold"][f"{test_set}/{k}"] for s in d["per_seed"]], 100)
                              for k in names]])
    return table(["test set (TNR % at FNR ≤ 5 %, threshold chosen on validation)", *names.values()], rows)


def _gpt_growth_tables() -> Any:
    """benchmarks/gpt_growth_table.py (the GPT benchmark's own table code), loaded by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpt_growth_table", HERE / "gpt_growth_table.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def t_gpt_growth() -> str:
    return _gpt_growth_tables().main_table(load("gpt_growth.json"))


def t_gpt_growth_gaps() -> str:
    return _gpt_growth_tables().gap_table(load("gpt_growth.json"))


def t_gpt_growth_long() -> str:
    return _gpt_growth_tables().main_table(load("gpt_growth_long.json"))


GENERATORS: dict[str, Callable[[], str]] = {
    "ops": t_ops, "trainer": t_trainer, "cumulative": t_cumulative, "analysis": t_analysis, "pruning": t_pruning,
    "pruning_counts": t_pruning_counts, "incremental": t_incremental, "net2net": t_net2net, "frontier_points": t_frontier_points,
    "frontier_targets": t_frontier_targets, "frontier_stages": t_frontier_stages,
    "stage_count_points": t_stage_count_points, "stage_count_targets": t_stage_count_targets,
    "stage_count_stages": t_stage_count_stages, "mi": t_mi, "mi_detection": t_mi_detection, "robustness": t_robustness,
    "gpt_growth": t_gpt_growth, "gpt_growth_gaps": t_gpt_growth_gaps, "gpt_growth_long": t_gpt_growth_long,
}
MARK = re.compile(r"(<!-- table:(\w+) -->\n)(.*?)(\n?<!-- /table:\2 -->)", re.S)  # an empty block fills too


def render(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in GENERATORS:
            raise SystemExit(f"BENCHMARKS.md: unknown table {name!r}; known: {sorted(GENERATORS)}")
        try:
            body = GENERATORS[name]()
        except FileNotFoundError as exc:
            body = f"(no result yet: {Path(exc.filename).name})"
        return m.group(1) + body + "\n" + m.group(4).lstrip("\n")

    return MARK.sub(sub, text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a table differs from its JSON")
    p.add_argument("--doc", default=str(DOC))
    args = p.parse_args()
    doc = Path(args.doc)
    text = doc.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{doc}: tables differ from benchmarks/results/*.json; run python benchmarks/tables.py")
            return 1
        return 0
    doc.write_text(new)
    print(f"wrote {doc} ({len(MARK.findall(new))} tables)")
    if (RESULTS / "frontier.json").is_file():
        from netgrow.analysis.plots import plot_frontier

        _, fr, rows = _frontier()
        png = plot_frontier(fr, HERE.parent / "docs" / "img" / "frontier_cumulative_vs_scratch.png",
                            title="Fashion-MNIST, VGG ×1/8 (mean ± std)", labels=LABELS,
                            targets=sorted({r["target"] for r in rows}))
        print(f"wrote {png}")
    if _stage_count_studies():
        from netgrow.analysis.plots import plot_frontier

        fr, rows, labels = _stage_count()
        png = plot_frontier(fr, HERE.parent / "docs" / "img" / "stage_count.png",
                            title="Stage count, Fashion-MNIST, VGG ×1/8", labels=labels,
                            targets=sorted({r["target"] for r in rows}))
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

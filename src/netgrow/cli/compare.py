"""``netgrow compare``: the side-by-side table of the cumulative paper's Table 1.

For every run, one row per stage and a total row: classes, architecture, test accuracy, M (forward MACs of
training, Eq. 1, in Tera/Peta), the ratio of M to the scratch run's M, wall time, parameters and MACs per
sample. The total row also gives the compute to target: the run-global M and wall time at which the run
first reaches the baseline's final accuracy minus 0.5 pp on the baseline's classes (the iso-accuracy
comparison; "-" if never; epochs of earlier stages scored on fewer classes do not count), and
``M_ratio@target``: that M over the M at which the baseline itself first reaches the same accuracy (the
saving at iso-accuracy).
Printed, and written as Markdown and CSV.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netgrow.cli.outputs import refuse_overwrite
from netgrow.cli.runs import Run, compute_to_target, load_run, pick_baseline

log = logging.getLogger(__name__)

COLUMNS = ["run", "strategy", "stage", "classes", "arch", "acc_%", "M", "M_ratio", "wall_s", "params",
           "MACs/sample", "M_to_target", "wall_to_target_s", "M_ratio@target"]
TARGET_MARGIN = 0.005  # 0.5 pp below the baseline's final accuracy


def format_count(n: float | None, unit: str = "") -> str:
    """``435.4e12 -> '435.4T'``: SI prefixes K, M, G, T, P, E (the paper reports M in Tera/Peta)."""
    if n is None:
        return "-"
    n = float(n)
    for prefix, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{prefix}{unit}"
    return f"{n:.4g}{unit}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else float(a) / float(b)


def compare_rows(runs: Sequence[Run], baseline: Run | None = None,
                 margin: float = TARGET_MARGIN) -> list[dict[str, Any]]:
    """Raw (unformatted) rows: per stage, then a ``stage = "total"`` row, for every run."""
    base = pick_baseline(list(runs), baseline)
    base_M = base.M_total if base is not None else None
    base_acc = (base.summary.get("final") or {}).get("test_acc") if base is not None else None
    target = None if base_acc is None else float(base_acc) - margin
    base_classes = (base.summary.get("final") or {}).get("classes") if base is not None else None
    base_hit = compute_to_target(base, target, base_classes) if base is not None and target is not None else None
    rows: list[dict[str, Any]] = []
    for run in runs:
        for s in run.stages:
            rows.append({
                "run": run.name, "strategy": run.strategy, "stage": s.get("stage"), "classes": s.get("classes"),
                "arch": _arch(s), "acc": s.get("test_acc"), "M": s.get("M"), "M_ratio": _ratio(s.get("M"), base_M),
                "wall": s.get("wall_time"), "params": s.get("params"),
                "macs": s.get("macs_per_sample_masked", s.get("macs_per_sample")),
                "M_to_target": None, "wall_to_target": None, "M_ratio_at_target": None,
            })
        final = run.summary.get("final") or {}
        hit = compute_to_target(run, target, base_classes) if target is not None else None
        last = run.stages[-1] if run.stages else {}
        rows.append({
            "run": run.name, "strategy": run.strategy, "stage": "total", "classes": final.get("classes"),
            "arch": _arch_path(run.stages), "acc": final.get("test_acc"), "M": run.M_total,
            "M_ratio": _ratio(run.M_total, base_M), "wall": run.summary.get("wall_time_total"),
            "params": final.get("params"),
            "macs": last.get("macs_per_sample_masked", final.get("macs_per_sample")),
            "M_to_target": hit["M"] if hit else None, "wall_to_target": hit["wall_time"] if hit else None,
            "M_ratio_at_target": _ratio(hit["M"], base_hit["M"]) if hit and base_hit else None,
        })
    return rows


def _arch_path(stages: list[dict[str, Any]]) -> str:
    """``vgg11→vgg16→vgg19×0.125`` (one width suffix when every stage has the same width)."""
    widths = {s.get("width") for s in stages}
    if len(widths) == 1:
        return _arch({"arch": "→".join(str(s.get("arch", "?")) for s in stages), "width": widths.pop()})
    return "→".join(_arch(s) for s in stages)


def _arch(stage: dict[str, Any]) -> str:
    arch = str(stage.get("arch", "?"))
    w = stage.get("width")
    return arch if w in (None, 1, 1.0) else f"{arch}×{float(w):g}"


def format_row(r: dict[str, Any]) -> list[str]:
    """One row as table cells."""
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    return [
        str(r["run"]), str(r["strategy"]), str(r["stage"]), num(r["classes"], "d"), str(r["arch"]),
        num(None if r["acc"] is None else 100 * r["acc"], ".2f"), format_count(r["M"]),
        num(r["M_ratio"], ".2f") + ("x" if r["M_ratio"] is not None else ""), num(r["wall"], ".1f"),
        format_count(r["params"]), format_count(r["macs"]), format_count(r["M_to_target"]),
        num(r["wall_to_target"], ".1f"),
        num(r["M_ratio_at_target"], ".2f") + ("x" if r["M_ratio_at_target"] is not None else ""),
    ]


def markdown(rows: Sequence[dict[str, Any]], baseline: str | None = None) -> str:
    """The table as GitHub Markdown (total rows in bold)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = format_row(r)
        if r["stage"] == "total":
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\nM = Σ training samples × forward MACs per sample (Eq. 1 of Feng & Panda); training FLOPs ≈ 6 M. "
            f"M_ratio relative to {baseline!r}; M_to_target: M when the run first reaches the baseline's final "
            f"accuracy − 0.5 pp; M_ratio@target: that M ÷ the baseline's own M to the same accuracy (the saving "
            f"at iso-accuracy).\n") if baseline else "\n"
    return "\n".join(lines) + "\n" + note


# the terminal table: short headers, no strategy column (the run name says it), the compute-to-target
# columns as lines below it -- so it fits ~100 columns (compare.md and compare.csv keep every column)
TEXT_COLUMNS = ["run", "stage", "K", "arch", "acc_%", "M", "M_ratio", "wall_s", "params", "MACs/smp"]
_TEXT_CELLS = [0, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # indices into format_row


def text_table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table for the terminal (about 100 columns for the demo's runs)."""
    cells = [TEXT_COLUMNS] + [[format_row(r)[i] for i in _TEXT_CELLS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(TEXT_COLUMNS))]
    out = []
    for j, row in enumerate(cells):
        out.append("  ".join(c.ljust(w) if i in (0, 1, 3) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    targets = [r for r in rows if r["stage"] == "total" and r["M_to_target"] is not None]
    if targets:
        out.append("compute to the baseline's final accuracy - 0.5 pp:")
        out += [f"  {r['run']}: M {format_count(r['M_to_target'])}, wall {r['wall_to_target']:.1f} s" for r in targets]
    return "\n".join(out) + "\n"


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """Machine-readable CSV with raw numbers (accuracy as a fraction, M in MACs, times in seconds)."""
    buf = io.StringIO()
    keys = ["run", "strategy", "stage", "classes", "arch", "acc", "M", "M_ratio", "wall", "params", "macs",
            "M_to_target", "wall_to_target", "M_ratio_at_target"]
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else r[k]) for k in keys})
    return buf.getvalue()


def compare(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None, baseline: str | Path | None = None,
            quiet: bool = False, force: bool = False) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Load the runs, print the table (unless ``quiet``), write ``compare.md`` and ``compare.csv``.

    ``out_dir`` defaults to the parent directory of the first run. Returns the two paths and the raw rows.
    The files of an earlier compare in ``out_dir`` are not overwritten unless ``force`` (``ConfigError``).
    """
    runs = [load_run(p) for p in run_dirs]
    base = load_run(baseline) if baseline is not None else None
    rows = compare_rows(runs, base)
    base_run = pick_baseline(runs, base)
    out = Path(out_dir) if out_dir is not None else Path(run_dirs[0]).resolve().parent
    md, cs = out / "compare.md", out / "compare.csv"
    refuse_overwrite([md, cs], force, "compare")
    out.mkdir(parents=True, exist_ok=True)
    md.write_text(markdown(rows, base_run.name if base_run else None))
    cs.write_text(csv_text(rows))
    if not quiet:
        print(text_table(rows), end="")
        if base_run is None:
            print("(no scratch run given: M_ratio and M_to_target are empty; pass --baseline SCRATCH_RUN_DIR)")
        print(f"wrote {md} and {cs}")
    return md, cs, rows

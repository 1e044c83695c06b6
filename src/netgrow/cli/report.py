"""``netgrow report``: PNG plots of one or more runs (matplotlib, Agg backend: no display needed).

- ``accuracy_vs_epochs.png``: test accuracy against the run-global epoch, stage boundaries dashed
  (Fig. 3 of the cumulative paper);
- ``accuracy_vs_macs.png``: test accuracy against the cumulative forward MACs of training (M), stage
  boundaries dashed;
- ``accuracy_vs_params.png``: the accuracy at the end of every stage against the model's parameters
  (Fig. 4 of the incremental paper).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from netgrow.cli.outputs import refuse_overwrite
from netgrow.cli.runs import Run, load_run

log = logging.getLogger(__name__)

PLOTS = ("accuracy_vs_epochs.png", "accuracy_vs_macs.png", "accuracy_vs_params.png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _boundaries(run: Run, key: str) -> list[float]:
    """x positions where a new stage starts (the x of the last epoch of the previous stage)."""
    xs = []
    for prev, row in zip(run.epochs, run.epochs[1:]):
        if row.get("stage") != prev.get("stage"):
            xs.append(float(prev[key]))
    return xs


def _curve(ax, runs: Sequence[Run], key: str, scale: float = 1.0) -> None:
    for i, run in enumerate(runs):
        color = f"C{i}"
        xs = [float(r[key]) / scale for r in run.epochs if r.get("test_acc") is not None]
        ys = [100 * float(r["test_acc"]) for r in run.epochs if r.get("test_acc") is not None]
        ax.plot(xs, ys, marker="o", ms=3, color=color, label=f"{run.name} ({run.strategy})")
        for b in _boundaries(run, key):
            ax.axvline(b / scale, color=color, ls="--", lw=0.8, alpha=0.6)
        # each stage is scored on its own classes (cumulative runs): say how many at the stage's first epoch
        if len({r.get("classes") for r in run.epochs}) > 1:
            first = [r for i, r in enumerate(run.epochs) if i == 0 or r.get("stage") != run.epochs[i - 1].get("stage")]
            for r in first:
                if r.get("test_acc") is not None and r.get("classes") is not None:
                    ax.annotate(f"{r['classes']} cls", (float(r[key]) / scale, 100 * float(r["test_acc"])),
                                textcoords="offset points", xytext=(4, -10), fontsize=7, color=color)
    ax.set_ylabel("test accuracy (%, on the stage's classes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


MARKERS = ("s", "o", "^", "D", "v", "P")


def params_plot(ax, runs: Sequence[Run]) -> None:
    """Accuracy at the end of every stage against parameters (log axis).

    Every run gets its own marker, hollow and drawn larger than the runs before it, so a point shared by
    two runs (scratch and grown models of one architecture) shows both; the x ticks are the parameter
    counts that occur, labelled 36.7K, 1.2M, ... (a log axis spanning less than a decade has no labelled
    tick of its own).
    """
    from matplotlib.ticker import FixedLocator, NullLocator

    from netgrow.cli.compare import format_count

    xs_all: set[float] = set()
    for i, run in enumerate(runs):
        # incremental runs list their phases (look-ahead stages are initialisations, not points of Fig. 4)
        source = (run.summary.get("extra") or {}).get("accuracy_vs_params") or run.stages
        pts = [(s["params"], 100 * s["test_acc"]) for s in source if s.get("params") and s.get("test_acc") is not None]
        if pts:
            ax.plot([p for p, _ in pts], [a for _, a in pts], marker=MARKERS[i % len(MARKERS)], color=f"C{i}",
                    ms=6 + 3 * i, fillstyle="none", mew=1.5, zorder=3 + len(runs) - i,
                    label=f"{run.name} ({run.strategy})")
            xs_all.update(float(p) for p, _ in pts)
    ax.set_xscale("log")
    if xs_all:
        ticks = sorted(xs_all)
        lo, hi = ticks[0], ticks[-1]
        ax.set_xlim(lo / 1.25, hi * 1.25)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(ticks, [format_count(t) for t in ticks])
    ax.set_xlabel("parameters (end of each stage)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs parameters")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def plot_runs(runs: Sequence[Run], out_dir: str | Path) -> list[Path]:
    """Write the three plots for ``runs`` into ``out_dir``; returns their paths."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    _curve(ax, runs, "global_epoch")
    ax.set_xlabel("epoch (all stages; dashed: stage boundaries)")
    ax.set_title("Test accuracy vs epochs")
    paths.append(out / PLOTS[0])
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = max((max((float(r["run_M"]) for r in run.epochs), default=0.0) for run in runs), default=0.0)
    scale, unit = next(((s, u) for s, u in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")) if top >= s), (1.0, ""))
    _curve(ax, runs, "run_M", scale)
    ax.set_xlabel(f"cumulative forward MACs of training, M ({unit}MAC; dashed: stage boundaries)")
    ax.set_title("Test accuracy vs training compute")
    paths.append(out / PLOTS[1])
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    params_plot(ax, runs)
    paths.append(out / PLOTS[2])
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def report(
    run_dirs: Sequence[str | Path], out_dir: str | Path | None = None, quiet: bool = False, force: bool = False
) -> list[Path]:
    """Load the runs and write the plots (default ``out_dir``: ``plots/`` beside the first run).

    Plots of an earlier report in ``out_dir`` are not overwritten unless ``force`` (``ConfigError``).
    """
    runs = [load_run(p) for p in run_dirs]
    out = Path(out_dir) if out_dir is not None else Path(run_dirs[0]).resolve().parent / "plots"
    refuse_overwrite([out / name for name in PLOTS], force, "report")
    paths = plot_runs(runs, out)
    if not quiet:
        for p in paths:
            print(f"wrote {p}")
    return paths

"""PNG plots of the analysis (Figs. 4 and 6 of Feng & Panda, and Table 3 as a curve).

Figures are built with ``matplotlib.figure.Figure`` and its Agg canvas, never through ``pyplot``, so
plotting works headless and never touches a user's interactive backend or global figure state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)


def _new_figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(5.0, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    log.debug("wrote %s", path)
    return path


def plot_robustness(curves: Mapping[str, Sequence[Mapping[str, float]]], xkey: str, xlabel: str, title: str,
                    path: str | os.PathLike[str]) -> Path:
    """Accuracy (mean with a ± std band) vs ``xkey`` for each labelled curve (rows of noise/ablation results)."""
    fig, ax = _new_figure()
    for label, rows in curves.items():
        xs = [r[xkey] for r in rows]
        mean = [100 * r["mean"] for r in rows]
        std = [100 * r["std"] for r in rows]
        (line,) = ax.plot(xs, mean, marker="o", markersize=3, label=label)
        ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_adversarial(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str], path: str | os.PathLike[str],
                     title: str = "FGSM adversarial accuracy") -> Path:
    """Accuracy vs ε, one line per ``columns`` entry (row key -> legend label); missing values skipped."""
    fig, ax = _new_figure()
    for key, label in columns.items():
        pts = [(r["eps"], 100 * r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=label)
    ax.set_xlabel("ε (fraction of the input range)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_detection(curves: Mapping[str, Mapping[str, Sequence[float]]], title: str,
                   path: str | os.PathLike[str]) -> Path:
    """TNR vs FNR (Fig. 6) for each labelled curve ``{"fnr": [...], "tnr": [...]}``; the diagonal for reference."""
    fig, ax = _new_figure()
    for label, c in curves.items():
        pts = sorted((f, t) for f, t in zip(c["fnr"], c["tnr"]) if f == f and t == t)  # drop NaN
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("FNR (misclassified inputs that still get a decision)")
    ax.set_ylabel("TNR (correct inputs that get a decision)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_frontier(frontier: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike[str],
                  title: str = "Compute-accuracy frontier", labels: Mapping[str, str] | None = None,
                  targets: Sequence[float] = ()) -> Path:
    """Test accuracy (mean ± std over seeds, error bars) against M (mean, TMACs) per method, on one axis;
    ``targets`` (accuracies in [0, 1]) are drawn as dotted horizontal lines."""
    labels = labels or {}
    fig, ax = _new_figure()
    for method, rows in frontier.items():
        xs = [r["M"] / 1e12 for r in rows]
        ys = [100 * r["acc"] for r in rows]
        es = [100 * r["acc_std"] for r in rows]
        ax.errorbar(xs, ys, yerr=es, marker="o", markersize=4, capsize=3,
                    label=f"{labels.get(method, method)} (n = {max(r['n'] for r in rows)})")
    for t in targets:
        ax.axhline(100 * t, linestyle=":", color="gray", linewidth=1)
    ax.set_xlabel("M (training MACs, ×10¹²)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)

"""Compute-accuracy frontiers: accuracy (mean ± std over seeds) against M per method and budget, and the
smallest M at which each method reaches a target accuracy, as a ratio to a reference (scratch).

A *point* is one finished run: ``{"method", "budget", "seed", "M", "test_acc"}`` (M in MACs, accuracy
in [0, 1]). Points of one method and budget over several seeds make one frontier point (mean M, mean
± std accuracy). Targets are the reference's best mean accuracy minus ``deltas`` (e.g. 0.5 and 1 pp);
the M to a target is that of the cheapest frontier point whose mean accuracy reaches it (no
interpolation: a budget that was not run cannot count). Per seed, the same with each seed's own
reference best gives a ratio per seed (mean ± std).

Example::

    >>> pts = [{"method": "scratch", "budget": b, "seed": s, "M": m, "test_acc": a}
    ...        for s in (0, 1) for b, m, a in [(1, 10, 0.80), (2, 20, 0.90), (4, 40, 0.92)]]
    >>> pts += [{"method": "grown", "budget": 1, "seed": s, "M": 12, "test_acc": 0.915} for s in (0, 1)]
    >>> t = targets(aggregate(pts), "scratch", deltas=(0.005, 0.01))
    >>> [(r["method"], round(r["target"], 3), r["M"], r["ratio"]) for r in t]
    [('scratch', 0.915, 40.0, 1.0), ('grown', 0.915, 12.0, 0.3), ('scratch', 0.91, 40.0, 1.0), ('grown', 0.91, 12.0, 0.3)]
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from netgrow.errors import NetgrowValueError


def _ms(values: Sequence[float]) -> tuple[float, float]:
    vals = [float(v) for v in values]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def aggregate(points: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``{method: [frontier point, ...]}`` sorted by mean M; a frontier point holds ``budget``, ``M`` (mean),
    ``M_std``, ``acc`` (mean), ``acc_std``, ``n`` (seeds) and ``seeds`` ({seed: (M, acc)})."""
    groups: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for p in points:
        missing = [k for k in ("method", "budget", "seed", "M", "test_acc") if k not in p]
        if missing:
            raise NetgrowValueError(f"netgrow.analysis.frontier: a point lacks {missing}: {dict(p)!r}")
        groups.setdefault((str(p["method"]), p["budget"]), []).append(p)
    out: dict[str, list[dict[str, Any]]] = {}
    for (method, budget), ps in groups.items():
        m, m_sd = _ms([p["M"] for p in ps])
        a, a_sd = _ms([p["test_acc"] for p in ps])
        out.setdefault(method, []).append({
            "budget": budget, "M": m, "M_std": m_sd, "acc": a, "acc_std": a_sd, "n": len(ps),
            "seeds": {int(p["seed"]): (float(p["M"]), float(p["test_acc"])) for p in ps},
        })
    for rows in out.values():
        rows.sort(key=lambda r: r["M"])
    return out


def first_reaching(rows: Sequence[Mapping[str, Any]], target: float, key: str = "acc") -> Mapping[str, Any] | None:
    """The cheapest row (by M) whose ``key`` reaches ``target`` (None if none does)."""
    hits = [r for r in rows if r[key] >= target - 1e-12]
    return min(hits, key=lambda r: r["M"]) if hits else None


def interpolated_M(rows: Sequence[Mapping[str, Any]], target: float, key: str = "acc") -> float | None:
    """M at which the frontier (rows sorted by M, linear between neighbouring points) first reaches ``target``;
    the first point's M if it already does; None if no point does (no extrapolation)."""
    rows = sorted(rows, key=lambda r: r["M"])
    for i, r in enumerate(rows):
        if r[key] >= target - 1e-12:
            if i == 0:
                return float(r["M"])
            a0, m0 = rows[i - 1][key], rows[i - 1]["M"]
            frac = (target - a0) / (r[key] - a0) if r[key] > a0 else 1.0
            return float(m0 + max(0.0, min(1.0, frac)) * (r["M"] - m0))
    return None


def targets(frontier: Mapping[str, Sequence[Mapping[str, Any]]], reference: str,
            deltas: Sequence[float] = (0.005, 0.01)) -> list[dict[str, Any]]:
    """One row per (target, method): ``{"delta", "target", "method", "M", "ratio", "budget", "M_interp",
    "ratio_interp", "seed_ratios", "seed_ratio_mean", "seed_ratio_std", "seeds_reached"}`` (M None: never
    reached). ``M_interp``: linear interpolation between the bracketing frontier points (a coarse grid
    otherwise credits a method with its next budget point's M)."""
    if reference not in frontier:
        raise NetgrowValueError(
            f"netgrow.analysis.frontier: the reference {reference!r} has no points; methods: {sorted(frontier)}"
        )
    ref = frontier[reference]
    best = max(r["acc"] for r in ref)
    ref_interp = {d: interpolated_M(ref, best - d) for d in deltas}
    seeds = sorted({s for r in ref for s in r["seeds"]})
    out = []
    for delta in deltas:
        target = best - delta
        ref_hit = first_reaching(ref, target)
        for method in [reference] + sorted(m for m in frontier if m != reference):
            rows = frontier[method]
            hit = first_reaching(rows, target)
            seed_ratios: list[float | None] = []
            for s in seeds:  # each seed against its own reference best
                ref_s = [{"M": r["seeds"][s][0], "acc": r["seeds"][s][1]} for r in ref if s in r["seeds"]]
                own = [{"M": r["seeds"][s][0], "acc": r["seeds"][s][1]} for r in rows if s in r["seeds"]]
                if not ref_s or not own:
                    continue
                t_s = max(r["acc"] for r in ref_s) - delta
                h_ref, h_own = first_reaching(ref_s, t_s), first_reaching(own, t_s)
                seed_ratios.append(None if h_own is None or h_ref is None else h_own["M"] / h_ref["M"])
            reached = [r for r in seed_ratios if r is not None]
            mean, std = _ms(reached) if reached else (None, None)
            m_interp = interpolated_M(rows, target)
            out.append({
                "delta": delta, "target": target, "method": method,
                "M_interp": m_interp, "ratio_interp": None if m_interp is None or not ref_interp[delta]
                else round(m_interp / ref_interp[delta], 6),
                "M": None if hit is None else hit["M"], "budget": None if hit is None else hit["budget"],
                "ratio": None if hit is None or ref_hit is None else round(hit["M"] / ref_hit["M"], 6),
                "seed_ratios": seed_ratios, "seed_ratio_mean": mean, "seed_ratio_std": std,
                "seeds_reached": len(reached), "seeds": len(seed_ratios),
            })
    return out


def frontier_markdown(frontier: Mapping[str, Sequence[Mapping[str, Any]]], rows: Sequence[Mapping[str, Any]],
                      labels: Mapping[str, str] | None = None, m_unit: float = 1e12) -> tuple[str, str]:
    """Two markdown tables: the frontier points and the targets (M in units of ``m_unit``, T = 1e12)."""
    labels = labels or {}
    unit = {1e12: "T", 1e9: "G", 1e6: "M"}.get(m_unit, f"×{m_unit:g}")
    pts = ["| method | budget | seeds | M | test accuracy |", "|---|---|---|---|---|"]
    for method, rs in frontier.items():
        for r in rs:
            pts.append(f"| {labels.get(method, method)} | {r['budget']} | {r['n']} | "
                       f"{r['M'] / m_unit:.3f} {unit} | {100 * r['acc']:.2f} ± {100 * r['acc_std']:.2f} % |")
    tg = ["| target | method | smallest M reaching it | budget | ratio to the reference | per seed (mean ± std) "
          "| M interpolated | ratio interpolated |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = "not reached" if r["M"] is None else f"{r['M'] / m_unit:.3f} {unit}"
        ratio = "-" if r["ratio"] is None else f"**{r['ratio']:.2f}×**"
        per_seed = "-" if r["seed_ratio_mean"] is None else (
            f"{r['seed_ratio_mean']:.2f} ± {r['seed_ratio_std']:.2f}× ({r['seeds_reached']}/{r['seeds']} seeds)")
        mi = "-" if r.get("M_interp") is None else f"{r['M_interp'] / m_unit:.3f} {unit}"
        ri = "-" if r.get("ratio_interp") is None else f"{r['ratio_interp']:.2f}×"
        tg.append(f"| {100 * r['target']:.2f} % (best − {100 * r['delta']:.1f} pp) | {labels.get(r['method'], r['method'])} "
                  f"| {m} | {'-' if r['budget'] is None else r['budget']} | {ratio} | {per_seed} | {mi} | {ri} |")
    return "\n".join(pts) + "\n", "\n".join(tg) + "\n"

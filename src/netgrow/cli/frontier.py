"""``netgrow frontier``: run experiment configs at several budgets x several seeds, then plot test accuracy
(mean ± std) against M with every method on one axis and tabulate the M each needs to reach a target.

Each budget is a factor applied to every epoch count of a config (``[train] epochs``, ``[cumulative]
epochs``, ``[net2net] teacher_epochs``/``student_epochs``, ``[incremental] max_epochs``; rounded, at least
1). Each (config, budget, seed) is one ``netgrow run`` into ``OUT/<name>/b<budget>-s<seed>``; finished runs
are reused, so an interrupted frontier continues where it stopped. The reference (``--reference``, default
the first config) sets the targets: its best mean test accuracy minus 0.5 and 1 pp. Writes
``OUT/frontier.json``, ``OUT/frontier.md`` and ``OUT/frontier.png``.

    netgrow frontier configs/demo_scratch.toml configs/demo_cumulative.toml --budgets 0.5,0.75,1 --seeds 3
"""

from __future__ import annotations

import copy
import json
import logging
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netgrow.errors import ConfigError

log = logging.getLogger(__name__)

EPOCH_KEYS = {"train": ("epochs",), "cumulative": ("epochs",), "net2net": ("teacher_epochs", "student_epochs"),
              "incremental": ("max_epochs",)}


def scale_epochs(raw: dict[str, Any], factor: float) -> dict[str, Any]:
    """A copy of a raw config dict with every epoch count multiplied by ``factor`` (rounded, >= 1).

    >>> scale_epochs({"train": {"epochs": 12}, "cumulative": {"epochs": [6, 3, 6]}}, 0.5)
    {'train': {'epochs': 6}, 'cumulative': {'epochs': [3, 2, 3]}}
    """
    if not factor > 0:
        raise ConfigError(f"netgrow frontier: budget factor {factor!r} is invalid; use a number > 0, e.g. 0.5")
    out = copy.deepcopy(raw)
    for section, keys in EPOCH_KEYS.items():
        table = out.get(section)
        if not isinstance(table, dict):
            continue
        for key in keys:
            v = table.get(key)
            if isinstance(v, list):
                table[key] = [max(1, round(e * factor)) for e in v]
            elif isinstance(v, int) and not isinstance(v, bool):
                table[key] = max(1, round(v * factor))
    return out


def with_seed(raw: dict[str, Any], seed: int) -> dict[str, Any]:
    """A copy with the experiment, training and class-order seeds set to ``seed``."""
    out = copy.deepcopy(raw)
    out["seed"] = seed
    out.setdefault("train", {})["seed"] = seed
    out.setdefault("data", {})["seed"] = seed
    return out


def parse_list(text: str, kind: type, what: str) -> list[Any]:
    try:
        return [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"netgrow frontier: {what}={text!r} is invalid; use a comma-separated list, e.g. 0.5,1") from None


def frontier(configs: Sequence[str | Path], budgets: Sequence[float], seeds: Sequence[int], out: str | Path,
             reference: str | None = None, quiet: bool = False) -> dict[str, Any]:
    """Run every (config, budget, seed) into ``out`` (finished runs reused), aggregate, plot and tabulate.

    Returns the ``frontier.json`` document (points, frontier, targets)."""
    from netgrow.analysis.frontier import aggregate, frontier_markdown, targets
    from netgrow.analysis.plots import plot_frontier
    from netgrow.cli.config import parse_config, resolve_with_data, validate_resources
    from netgrow.strategies import run_experiment

    out = Path(out)
    raws = []
    for path in configs:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"netgrow frontier: config file {str(path)!r} does not exist")
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        raw.setdefault("name", path.stem)
        raws.append((path, raw))
    names = [r["name"] for _, r in raws]
    if len(set(names)) != len(names):
        raise ConfigError(f"netgrow frontier: two configs share the name {names}; give each a distinct `name`")
    reference = reference or names[0]
    if reference not in names:
        raise ConfigError(f"netgrow frontier: --reference {reference!r} is not one of the configs' names {names}")
    # validate every variant before the first run
    jobs = []
    for path, raw in raws:
        for b in budgets:
            for s in seeds:
                variant = with_seed(scale_epochs(raw, b), s)
                cfg = parse_config(variant, source=f"{path} (budget {b:g}, seed {s})")
                jobs.append((raw["name"], b, s, cfg))
    points = []
    data_cache: dict[str, Any] = {}
    for name, b, s, cfg in jobs:
        run_dir = out / name / f"b{b:g}-s{s}"
        summary_path = run_dir / "summary.json"
        if not summary_path.is_file():
            key = (cfg.data.name, cfg.data.root)  # the data set is loaded once per name
            if key not in data_cache:  # validate_resources loads the data and resolves the config with it
                cfg_r, train, test = validate_resources(cfg)
                data_cache = {key: (train, test)}
            else:
                train, test = data_cache[key]
                cfg_r = resolve_with_data(cfg, train)
            if not quiet:
                print(f"[frontier] {name} budget {b:g} seed {s} -> {run_dir}", flush=True)
            run_experiment(cfg_r.replace(out=str(run_dir)), run_dir, train, test, quiet=True)
        summary = json.loads(summary_path.read_text())
        points.append({"method": name, "budget": b, "seed": s, "M": int(summary["M_total"]),
                       "test_acc": float(summary["final"]["test_acc"]), "run": str(run_dir)})
    agg = aggregate(points)
    rows = targets(agg, reference)
    doc = {"reference": reference, "budgets": list(budgets), "seeds": list(seeds), "points": points,
           "frontier": agg, "targets": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "frontier.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    pts_md, tg_md = frontier_markdown(agg, rows)
    (out / "frontier.md").write_text("# Frontier\n\n" + pts_md + "\n" + tg_md)
    plot_frontier(agg, out / "frontier.png", targets=sorted({r["target"] for r in rows}))
    if not quiet:
        print(pts_md + "\n" + tg_md + f"\nwrote {out / 'frontier.json'}, {out / 'frontier.md'}, {out / 'frontier.png'}")
    return doc

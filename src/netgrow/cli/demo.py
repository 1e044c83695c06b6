"""``netgrow demo``: the cumulative paper's headline at Fashion-MNIST scale, on a laptop CPU.

Runs cumulative VGG11 -> VGG19 over 5 -> 10 classes and scratch VGG19, both at width 1/8
(the packaged ``configs/demo_cumulative.toml`` and ``configs/demo_scratch.toml``), then prints the
comparison table and writes the plots. About 3.3 minutes on 2 idle CPU cores (several times longer on
busy ones; see docs/cli.md); ``--quick`` (a few hundred
images, one epoch per stage, width 1/16) takes seconds and is what the tests run.
"""

from __future__ import annotations

import logging
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEMO_CONFIGS = ("demo_cumulative.toml", "demo_scratch.toml")
QUICK = {"limit_train": 600, "limit_test": 300, "epochs": 1, "width": 0.0625}


def packaged_config(name: str) -> dict[str, Any]:
    """The raw TOML dict of a config shipped in ``netgrow/configs``."""
    return tomllib.loads((resources.files("netgrow") / "configs" / name).read_text(encoding="utf-8"))


def demo_configs(quick: bool = False) -> list[Any]:
    """The two validated demo experiments (quick: tiny subset, 1 epoch per stage, width 1/16)."""
    from netgrow.strategies.experiment import parse_config

    out = []
    for name in DEMO_CONFIGS:
        raw = packaged_config(name)
        if quick:
            raw["data"].update(limit_train=QUICK["limit_train"], limit_test=QUICK["limit_test"])
            raw.setdefault("model", {})["width"] = QUICK["width"]
            raw.setdefault("train", {})["epochs"] = QUICK["epochs"]
            for section in raw.values():  # [train] and any per-stage budget of the strategy's section
                if isinstance(section, dict) and "epochs" in section:
                    section["epochs"] = QUICK["epochs"]
        out.append(parse_config(raw, source=f"netgrow/configs/{name}"))
    return out


def demo(out: str | Path | None = None, quick: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Run both demo experiments into ``out`` (default ``runs/demo-<time>``), compare and plot.

    Returns ``{"runs": [dirs], "compare": path of compare.md, "plots": [paths], "wall_time": seconds}``.
    """
    from netgrow.cli.compare import compare
    from netgrow.cli.main import check_out_dir
    from netgrow.cli.report import report
    from netgrow.strategies import run_experiment

    out = Path(out) if out is not None else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    check_out_dir(out, resume=False)
    cfgs = demo_configs(quick)
    resolved = _with_data(cfgs)  # everything checked before the first write
    t0 = time.perf_counter()
    run_dirs = []
    for i, (cfg, train, test) in enumerate(resolved, start=1):
        run_dir = out / cfg.strategy
        if not quiet:
            print(f"[{i}/{len(resolved)}] {_describe(cfg)} -> {run_dir}", flush=True)
        run_experiment(cfg.replace(out=str(run_dir)), run_dir, train, test, quiet=quiet)
        run_dirs.append(run_dir)
    md, _, _ = compare(run_dirs, out_dir=out, quiet=quiet)
    plots = report(run_dirs, out_dir=out / "plots", quiet=quiet)
    wall = time.perf_counter() - t0
    if not quiet:
        print(f"demo finished in {wall / 60:.1f} min; table: {md}; plots: {out / 'plots'}")
    return {"runs": run_dirs, "compare": md, "plots": plots, "wall_time": wall}


def _with_data(cfgs: list[Any]) -> list[tuple[Any, Any, Any]]:
    """``validate_resources`` of each config, loading each data set once (both demo runs share one)."""
    from netgrow.strategies.resources import check_device, resolve_with_data, validate_resources

    loaded: dict[tuple[str, Any], tuple[Any, Any]] = {}
    out = []
    for cfg in cfgs:
        key = (cfg.data.name, cfg.data.root)
        if key in loaded:
            train, test = loaded[key]
            check_device(cfg)
            out.append((resolve_with_data(cfg, train, test), train, test))
        else:
            cfg, train, test = validate_resources(cfg)
            loaded[key] = (train, test)
            out.append((cfg, train, test))
    return out


def _describe(cfg: Any) -> str:
    from netgrow.strategies import plan

    sched = "→".join(str(k) for k in cfg.data.schedule)
    archs = []
    for stage in plan(cfg, list(cfg.data.schedule)):
        if stage.arch.upper() not in archs:
            archs.append(stage.arch.upper())
    return f"{cfg.strategy} {'→'.join(archs)} on {sched} classes of {cfg.data.name}, width {cfg.model.width:g}"

"""The strategy registry: a strategy is one module-level ``Strategy`` (options parser, plan, run, first
models); the experiment config and the CLI know nothing else about it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from netgrow.errors import ConfigError
from netgrow.strategies import registry
from netgrow.strategies.base import Stage
from netgrow.strategies.experiment import parse_config
from netgrow.strategies.resources import validate_resources
from netgrow.strategies.registry import Strategy, get_strategy, register_strategy, strategy_names


@dataclass(frozen=True)
class RepeatConfig:
    times: int = 2


def _parse(section, ctx):
    times = section.int_("times", default=2, lo=1)
    section.done()
    return RepeatConfig(times)


def _plan(cfg, class_counts):
    return [Stage(name=f"repeat{i}", classes=class_counts[-1], arch=cfg.model.arch, width=cfg.model.width,
                  epochs=1, data_index=len(class_counts) - 1) for i in range(cfg.options.times)]


def _run(exp):
    model = None
    for i, st in enumerate(_plan(exp.cfg, exp.class_counts)):
        model = exp.create(st.arch, st.classes, st.width) if model is None else model
        model = exp.run_stage(i, st, model).model


REPEAT = Strategy(name="repeat", parse=_parse, plan=_plan, run=_run, section="repeat",
                  first_models=lambda cfg: [("model.arch", cfg.model.arch, cfg.model.width)])

RAW = {"strategy": "repeat", "data": {"name": "digits", "limit_train": 200, "limit_test": 100},
       "model": {"arch": "mlp", "width": 0.25}, "train": {"batch_size": 50}}


@pytest.fixture
def repeat(monkeypatch):
    monkeypatch.setattr(registry, "_registered", {})
    register_strategy(REPEAT)
    return REPEAT


def test_builtin_strategies_come_from_their_modules():
    assert strategy_names() == ("scratch", "net2net", "cumulative", "incremental")
    for name in strategy_names():
        s = get_strategy(name)
        assert s.name == name
        assert s is __import__(registry.BUILTIN[name], fromlist=["STRATEGY"]).STRATEGY
    with pytest.raises(ConfigError, match="unknown strategy 'grow'; allowed: scratch, net2net"):
        get_strategy("grow")


def test_a_registered_strategy_parses_its_own_section(repeat):
    cfg = parse_config({**RAW, "repeat": {"times": 3}})
    assert cfg.options == RepeatConfig(3) and cfg.to_dict()["repeat"] == {"times": 3}
    with pytest.raises(ConfigError, match=r"repeat.timez = 3: unknown key; did you mean 'times'\?"):
        parse_config({**RAW, "repeat": {"timez": 3}})
    with pytest.raises(ConfigError, match=r"section \[cumulative\] does not apply to strategy 'repeat'"):
        parse_config({**RAW, "cumulative": {"archs": []}})
    with pytest.raises(ConfigError, match=r"section \[repeat\] does not apply to strategy 'scratch'"):
        parse_config({**RAW, "strategy": "scratch", "repeat": {"times": 3}})


@pytest.mark.slow
def test_a_registered_strategy_runs(repeat, tmp_path):
    from netgrow.strategies import run_experiment

    cfg, train, test = validate_resources(parse_config({**RAW, "repeat": {"times": 2}}))
    summary = run_experiment(cfg, tmp_path / "run", train, test, quiet=True)
    assert [s["name"] for s in summary["stages"]] == ["repeat0", "repeat1"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["repeat"] == {"times": 2}

"""Frontiers: aggregation and M-to-target by hand; ``netgrow frontier`` end to end on digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netgrow.analysis.frontier import aggregate, frontier_markdown, targets
from netgrow.cli.frontier import scale_epochs, with_seed
from netgrow.cli.main import main
from netgrow.errors import ConfigError, NetgrowValueError


def _pts(method, rows):
    return [{"method": method, "budget": b, "seed": s, "M": m, "test_acc": a} for b, s, m, a in rows]


def test_aggregate_and_targets_by_hand():
    pts = _pts("scratch", [(1, 0, 100, 0.80), (1, 1, 100, 0.84), (2, 0, 200, 0.90), (2, 1, 200, 0.92)])
    pts += _pts("grown", [(1, 0, 60, 0.895), (1, 1, 70, 0.905), (2, 0, 90, 0.92), (2, 1, 90, 0.90)])
    fr = aggregate(pts)
    assert [r["budget"] for r in fr["scratch"]] == [1, 2]
    s2 = fr["scratch"][1]
    assert s2["M"] == 200 and s2["acc"] == pytest.approx(0.91) and s2["acc_std"] == pytest.approx(0.0141421, abs=1e-6)
    assert fr["grown"][0]["M"] == 65 and fr["grown"][0]["M_std"] == pytest.approx(7.0710678)
    rows = {(r["delta"], r["method"]): r for r in targets(fr, "scratch", deltas=(0.005, 0.02))}
    # scratch best mean 0.91 -> targets 0.905 and 0.89
    r = rows[(0.005, "grown")]
    assert r["target"] == pytest.approx(0.905) and r["M"] == 90 and r["ratio"] == pytest.approx(90 / 200)
    # per seed: seed 0 best 0.90 -> 0.895: grown 60 vs scratch 200; seed 1 best 0.92 -> 0.915: grown never
    assert r["seed_ratios"] == [pytest.approx(0.3), None] and r["seeds_reached"] == 1
    r = rows[(0.02, "grown")]  # 0.89: grown's cheapest mean point (0.90 at 65) reaches it
    assert r["M"] == 65 and r["ratio"] == pytest.approx(65 / 200)
    assert rows[(0.005, "scratch")]["ratio"] == 1.0
    pts_md, tg_md = frontier_markdown(fr, targets(fr, "scratch"), m_unit=1.0)
    assert "| grown | 1 | 2 | 65.000 ×1 | 90.00 ± 0.71 % |" in pts_md
    assert "**0.45×**" in tg_md and "| 0.45× |" not in tg_md
    with pytest.raises(NetgrowValueError, match="reference 'nope'"):
        targets(fr, "nope")


def test_scale_epochs_and_seeds():
    raw = {"train": {"epochs": 10}, "net2net": {"teacher_epochs": 4, "student_epochs": 3},
           "incremental": {"max_epochs": 1}}
    out = scale_epochs(raw, 0.5)
    assert out == {"train": {"epochs": 5}, "net2net": {"teacher_epochs": 2, "student_epochs": 2},
                   "incremental": {"max_epochs": 1}} and raw["train"]["epochs"] == 10
    assert with_seed({"data": {"name": "x"}}, 3) == {"data": {"name": "x", "seed": 3}, "seed": 3, "train": {"seed": 3}}
    with pytest.raises(ConfigError, match="budget factor"):
        scale_epochs(raw, 0)


CFG = """name = "{name}"
strategy = "scratch"
[data]
name = "digits"
limit_train = 200
limit_test = 100
[model]
arch = "mlp"
width = {width}
[train]
epochs = 2
batch_size = 50
"""


def test_netgrow_frontier_end_to_end(tmp_path, capsys, monkeypatch):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(CFG.format(name="small", width=0.5))
    b.write_text(CFG.format(name="large", width=1.0))
    out = tmp_path / "fr"
    rc = main(["frontier", str(a), str(b), "--budgets", "0.5,1", "--seeds", "2", "--out", str(out), "--quiet"])
    assert rc == 0
    doc = json.loads((out / "frontier.json").read_text())
    assert len(doc["points"]) == 8 and doc["reference"] == "small"
    for p in doc["points"]:  # each point is the run's own summary
        s = json.loads((Path(p["run"]) / "summary.json").read_text())
        assert p["M"] == s["M_total"] and p["test_acc"] == s["final"]["test_acc"]
        assert s["epochs_total"] == (1 if p["budget"] == 0.5 else 2)
    m = {(p["method"], p["budget"]) for p in doc["points"]}
    assert m == {("small", 0.5), ("small", 1.0), ("large", 0.5), ("large", 1.0)}
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG" and "ratio" in (out / "frontier.md").read_text()
    # a second call reuses every finished run
    import netgrow.strategies as strategies

    monkeypatch.setattr(strategies, "run_experiment", lambda *a, **k: pytest.fail("a finished run was rerun"))
    assert main(["frontier", str(a), str(b), "--budgets", "0.5,1", "--seeds", "2", "--out", str(out), "--quiet"]) == 0
    assert main(["frontier", str(a), "--budgets", "1", "--seeds", "1", "--out", str(out), "--reference", "x"]) == 2
    assert "--reference 'x'" in capsys.readouterr().err


def test_interpolated_M_by_hand():
    from netgrow.analysis.frontier import interpolated_M

    rows = [{"M": 10, "acc": 0.80}, {"M": 20, "acc": 0.90}, {"M": 40, "acc": 0.92}]
    assert interpolated_M(rows, 0.85) == pytest.approx(15.0)  # halfway between 0.80 and 0.90
    assert interpolated_M(rows, 0.91) == pytest.approx(30.0)
    assert interpolated_M(rows, 0.70) == 10.0 and interpolated_M(rows, 0.95) is None
    pts = [{"method": "s", "budget": b, "seed": 0, "M": r["M"], "test_acc": r["acc"]} for b, r in enumerate(rows)]
    pts += [{"method": "g", "budget": 0, "seed": 0, "M": 12, "test_acc": 0.915}]
    t = {r["method"]: r for r in targets(aggregate(pts), "s", deltas=(0.005,))}
    assert t["s"]["M_interp"] == pytest.approx(35.0) and t["g"]["ratio_interp"] == pytest.approx(12 / 35)
    assert t["g"]["ratio"] == pytest.approx(12 / 40)

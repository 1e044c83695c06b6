"""analyze_run on hand-built run directories: the files written, the numbers in them, the errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import netgrow
import netgrow.models as M
from analysis_toys import blob_images
from netgrow.analysis import analyze_run, mutual_vote, noise_robustness, tnr_at_fnr
from netgrow.data import InMemoryDataset, nested_subsets, register_dataset
from netgrow.errors import CheckpointError, ConfigError, DataError, NetgrowValueError

pytestmark = pytest.mark.slow  # trains three small VGGs once (module fixture), then analyses them

DATA = "test_analysis_blobs"
CLASSES = ["north", "east", "south", "west"]
SETTINGS = dict(sigmas=[0.0, 0.5, 50.0], fractions=[0.0, 0.5, 1.0], eps=[0.0, 0.05, 0.1], thresholds=[0.0, 0.5, 1.0],
                draws=2, trials=2, detect_eps=0.05, quiet=True, batch_size=64)


def _u8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def _datasets():
    xtr, ytr = blob_images(320, 4, seed=0, noise=0.25)
    xte, yte = blob_images(200, 4, seed=1, noise=0.25)
    train = InMemoryDataset(_u8(xtr), ytr, CLASSES, name=DATA)
    test = InMemoryDataset(_u8(xte), yte, CLASSES, name=DATA, mean=train.mean, std=train.std)
    return train, test


register_dataset(DATA, lambda root=None, **kw: _datasets())


def _model(k: int, seed: int, subset=None, steps: int = 20):
    torch.manual_seed(seed)
    m = M.create("vgg11", num_classes=k, width=0.125, in_channels=1, input_size=8)
    if subset is not None:
        x, y = subset.tensors()
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        m.train()
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
    return m.eval()


def _accuracy(model, subset) -> float:
    x, y = subset.tensors()
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum()) / len(y)


def _write_run(run: Path, schedule, seed, models, data=DATA, test_acc=True, orders=None):
    (run / "stages").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "name": run.name, "strategy": "cumulative",
        "data": {"name": data, "root": None, "schedule": schedule, "seed": seed, "limit_test": None}}))
    _, test = _datasets()
    ks = [m[1] for m in models]
    tests = nested_subsets(test, sorted(set(ks)), seed=seed)
    for i, (model, k) in enumerate(models):
        netgrow.save(model, run / "stages" / f"stage{i}.safetensors")
        sub = next(t for t in tests if t.num_classes == k)
        order = orders[i] if orders else sub.class_order
        summary = {"name": f"stage{i}", "info": {"classes": k, "arch": "vgg11", "class_order": list(order)}}
        if test_acc:
            summary["test_acc"] = _accuracy(model, sub)
            summary["val_acc"] = 0.5 + 0.1 * i  # weights must come from here, never from test_acc
        (run / "stages" / f"stage{i}.json").write_text(json.dumps(summary))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train, _ = _datasets()
    cum = nested_subsets(train, [2, 4], seed=0)
    m0 = _model(2, 0, cum[0])
    m1 = _model(4, 1, cum[1])
    scratch = nested_subsets(train, [4], seed=1)[0]  # another class order: the baseline must be realigned
    b = _model(4, 2, scratch)
    run = _write_run(root / "cumulative", [2, 4], 0, [(m0, 2), (m1, 4)])
    base = _write_run(root / "scratch", [4], 1, [(b, 4)])
    result = analyze_run(run, baseline=base, **SETTINGS)
    return {"run": run, "base": base, "root": root, "result": result, "models": [m0, m1], "baseline": b}


def test_files_written(runs):
    out = runs["run"] / "analysis"
    names = {"analysis.json", "noise.csv", "ablation.csv", "adversarial.csv", "table3.md", "detection_buckets.csv",
             "detection_curves.csv", "fig4_noise.png", "fig4_ablation.png", "table3_fgsm.png", "fig6_clean.png",
             "fig6_adversarial.png"}
    assert names <= {p.name for p in out.iterdir()}
    for png in (n for n in names if n.endswith(".png")):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "analysis.json").read_text()) == runs["result"]


def test_clean_numbers_match_direct_evaluation(runs):
    res, (m0, m1), b = runs["result"], runs["models"], runs["baseline"]
    _, test = _datasets()
    final_test = nested_subsets(test, [2, 4], seed=0)[1]
    x, y = final_test.tensors()
    assert res["data"]["test_samples"] == len(y) == 200
    assert res["data"]["class_names"] == final_test.classes
    with torch.no_grad():
        p0, p1 = m0(x).softmax(1), m1(x).softmax(1)
    assert res["clean"]["final"] == int((p1.argmax(1) == y).sum()) / 200
    assert res["clean"]["mi"] == int((mutual_vote([p0, p1]) == y).sum()) / 200
    assert res["clean"]["mi_defer"] == int((mutual_vote([p0, p1], defer_unknown=True) == y).sum()) / 200
    # soft vote by hand: p0 zero-padded to 4 classes, averaged with equal weights, argmax
    avg = (torch.cat([p0, torch.zeros(len(y), 2)], 1).double() + p1.double()) / 2
    assert res["clean"]["mi_soft"] == int((avg.argmax(1) == y).sum()) / 200
    own = y < 2
    own_acc = int((p0[own].argmax(1) == y[own]).sum()) / int(own.sum())
    assert res["clean"]["stages"][0]["accuracy_own_classes"] == own_acc
    assert res["clean"]["stages"][0]["recorded_test_acc"] == res["clean"]["stages"][0]["accuracy_own_classes"]
    # the baseline has its own class order; on its own labels its accuracy is the same number
    assert res["clean"]["baseline"] == _accuracy(b, nested_subsets(test, [4], seed=1)[0])
    assert 0.5 < res["clean"]["final"] and 0.5 < res["clean"]["baseline"]


def test_robustness_numbers(runs):
    res = runs["result"]
    for label in ("grown (final model)", "scratch baseline"):
        noise, abl = res["noise"][label], res["ablation"][label]
        clean = res["clean"]["final"] if label.startswith("grown") else res["clean"]["baseline"]
        assert noise["rows"][0]["accs"] == [clean, clean]  # σ = 0 and fraction 0 are the clean model
        assert abl["rows"][0]["accs"] == [clean, clean]
        assert noise["rows"][2]["mean"] < clean - 0.2
        xs, ys = [r["sigma"] for r in noise["rows"]], [r["mean"] for r in noise["rows"]]
        area = sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]))
        assert noise["area"] == pytest.approx(area) and noise["normalized_area"] == pytest.approx(area / 50.0)
    _, test = _datasets()
    x, y = nested_subsets(test, [2, 4], seed=0)[1].tensors()
    direct = noise_robustness(runs["models"][1], (x, y), [0.5], draws=2, batch_size=64)
    assert res["noise"]["grown (final model)"]["rows"][1]["accs"] == direct[0]["accs"]


def test_table3(runs):
    res = runs["result"]
    rows = res["adversarial"]
    assert [r["eps"] for r in rows] == [0.0, 0.05, 0.1]
    assert rows[0]["mi"] == res["clean"]["mi"] and rows[0]["final"] == res["clean"]["final"]
    assert rows[0]["baseline"] == res["clean"]["baseline"]
    assert rows[2]["final"] < rows[0]["final"]
    md = (runs["run"] / "analysis" / "table3.md").read_text()
    assert ("| ε | grown (w/ MI, vote) | grown (w/ MI, defer) | grown (w/ MI, soft) | grown (w/o MI) | "
            "scratch baseline |") in md
    r = rows[1]
    assert (f"| 0.05 | {100 * r['mi']:.2f} | {100 * r['mi_defer']:.2f} | {100 * r['mi_soft']:.2f} | "
            f"{100 * r['final']:.2f} | {100 * r['baseline']:.2f} |") in md
    with open(runs["run"] / "analysis" / "adversarial.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["final"]) for r in table] == [r["final"] for r in rows]


def test_detection(runs):
    res = runs["result"]
    for set_name in ("clean", "adversarial"):
        d = res["detection"][set_name]
        assert set(d) == {"final", "mi", "mi_defer", "mi_soft", "baseline"}
        for method, v in d.items():
            b = v["buckets"]
            assert [r["threshold"] for r in b] == [0.0, 0.5, 1.0]
            assert all(r["correct"] + r["no_decision"] + r["wrong"] == 200 for r in b)
            assert b[0]["no_decision"] == 0 and b[0]["correct"] == round(v["accuracy"] * 200)
            assert (b[2]["correct"], b[2]["wrong"]) == (0, 0)
            assert v["tnr_at_fnr"] == tnr_at_fnr(v["curve"]["fnr"], v["curve"]["tnr"], 0.05)
    assert res["detection"]["clean"]["mi"]["accuracy"] == res["clean"]["mi"]
    adv = {r["eps"]: r for r in res["adversarial"]}[0.05]
    assert res["detection"]["adversarial"]["final"]["accuracy"] == adv["final"]
    assert res["detection"]["adversarial"]["mi"]["accuracy"] == adv["mi"]
    with open(runs["run"] / "analysis" / "detection_buckets.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 * 5 * 3  # sets x methods x thresholds


def test_val_acc_weights_and_out_dir(runs, tmp_path):
    res = analyze_run(runs["run"], out_dir=tmp_path / "out", weights="val_acc", sigmas=[0.0], fractions=[0.0],
                      eps=[0.0], draws=1, trials=1, max_samples=50, quiet=True)
    assert res["settings"]["weights"] == [0.5, 0.6] and res["data"]["test_samples"] == 50
    assert [s["recorded_test_acc"] for s in res["clean"]["stages"]] != [0.5, 0.6]
    assert res["baseline"] is None and "scratch baseline" not in res["noise"]
    assert (tmp_path / "out" / "table3.md").is_file() and not (tmp_path / "out" / "fig6_clean.png").stat().st_size == 0


# ----------------------------------------------------------------------------------------------- errors
def _copy(runs, name: str) -> Path:
    dst = runs["root"] / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(runs["run"], dst, ignore=shutil.ignore_patterns("analysis"))
    return dst


def test_run_without_stage_checkpoints(runs):
    run = _copy(runs, "no_stages")
    shutil.rmtree(run / "stages")
    with pytest.raises(CheckpointError, match="holds no stage checkpoints .* mutual inference"):
        analyze_run(run, quiet=True)


def test_missing_stage(runs):
    run = _copy(runs, "gap")
    (run / "stages" / "stage1.safetensors").rename(run / "stages" / "stage2.safetensors")
    with pytest.raises(CheckpointError, match=r"missing stage\(s\) \[1\]"):
        analyze_run(run, quiet=True)


def test_config_problems(runs, tmp_path):
    run = _copy(runs, "no_config")
    (run / "config.json").unlink()
    with pytest.raises(ConfigError, match="config.json' not found"):
        analyze_run(run, quiet=True)
    (run / "config.json").write_text(json.dumps({"data": {"schedule": [2, 4]}}))
    with pytest.raises(ConfigError, match="has no data.name"):
        analyze_run(run, quiet=True)
    with pytest.raises(ConfigError, match="does not exist"):
        analyze_run(tmp_path / "nowhere", quiet=True)


def test_baseline_on_another_data_set(runs):
    other = _copy(runs, "other_data")
    cfg = json.loads((other / "config.json").read_text())
    cfg["data"]["name"] = "digits"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="trained on 'test_analysis_blobs' but the baseline .* on 'digits'"):
        analyze_run(runs["run"], baseline=other, quiet=True)


def test_baseline_on_other_classes(runs, tmp_path):
    base = _write_run(tmp_path / "three", [3], 0, [(_model(3, 5), 3)])
    with pytest.raises(DataError, match="the comparison needs both trained on the same classes"):
        analyze_run(runs["run"], baseline=base, quiet=True, sigmas=[0.0])


def test_summary_disagrees_with_checkpoint(runs, tmp_path):
    run = _write_run(tmp_path / "liar", [3, 4], 0, [(_model(2, 0), 3), (_model(4, 1), 4)],
                     orders=[[0, 1, 2], [0, 1, 2, 3]])
    with pytest.raises(CheckpointError, match="has 2 outputs but its summary says it was trained on 3 classes"):
        analyze_run(run, quiet=True)


def test_stage_models_with_other_labels(runs, tmp_path):
    run = _write_run(tmp_path / "orders", [2, 4], 0, [(_model(2, 0), 2), (_model(4, 1), 4)],
                     orders=[[3, 1], [0, 1, 2, 3]])
    with pytest.raises(DataError, match="do not share their labels"):
        analyze_run(run, quiet=True)
    run = _write_run(tmp_path / "shrinking", [4, 2], 0, [(_model(4, 0), 4), (_model(2, 1), 2)],
                     orders=[[0, 1, 2, 3], [0, 1]])
    with pytest.raises(DataError, match="nested class sets"):
        analyze_run(run, quiet=True)


def test_val_acc_needs_recorded_accuracies(tmp_path):
    run = _write_run(tmp_path / "noacc", [2, 4], 0, [(_model(2, 0), 2), (_model(4, 1), 4)], test_acc=False)
    with pytest.raises(NetgrowValueError, match="weights='val_acc' needs each stage's validation accuracy"):
        analyze_run(run, weights="val_acc", quiet=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"eps": [0.0, -0.01]}, "eps"),
    ({"sigmas": [-1.0]}, "sigmas"),
    ({"fractions": [1.2]}, "fractions"),
    ({"thresholds": [0.5, 1.2]}, "thresholds"),
    ({"weights": "bogus"}, "unknown weights 'bogus'"),
    ({"max_samples": 0}, "max_samples must be a positive int"),
    ({"detect_eps": -1.0}, "detect_eps"),
])
def test_bad_settings_fail_before_reading_anything(tmp_path, kwargs, match):
    with pytest.raises(NetgrowValueError, match=match):
        analyze_run(tmp_path / "does-not-matter", quiet=True, **kwargs)


def test_no_decision_thresholds_are_chosen_on_the_validation_split(runs, tmp_path):
    from netgrow.analysis import decision_buckets, detection_curve, mi_scores, standard_scores, threshold_at_fnr
    from netgrow.analysis.runs import load_test_set, open_run

    run = _copy(runs, "with_val")
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["val_fraction"] = 0.25
    (run / "config.json").write_text(json.dumps(cfg))
    res = analyze_run(run, out_dir=tmp_path / "out", **SETTINGS)
    opened = open_run(run)
    val = load_test_set(opened, 4, split="val")
    assert len(val.y) == 80  # 25 % of the 320 training images, stratified
    test = load_test_set(opened, 4)
    m0, m1 = runs["models"]
    with torch.no_grad():
        pv = [m0(val.x).softmax(1), m1(val.x).softmax(1)]
        pt = [m0(test.x).softmax(1), m1(test.x).softmax(1)]
    for method, fn in (("final", lambda p: standard_scores(p[-1])), ("mi", lambda p: mi_scores(p))):
        d = res["detection"]["clean"][method]
        t = threshold_at_fnr(detection_curve(*fn(pv), val.y), 0.05)
        assert d["val_threshold"] == pytest.approx(t)
        b = decision_buckets(*fn(pt), test.y, [d["val_threshold"]])[0]
        assert d["at_val_threshold"] == pytest.approx({"tnr": b["tnr"], "fnr": b["fnr"]}, nan_ok=True)
    # without a validation split there is no threshold to choose: the runs fixture has none
    assert "val_threshold" not in runs["result"]["detection"]["clean"]["final"]


def test_analysis_with_a_validation_split_reads_the_data_set_once(runs, tmp_path, monkeypatch):
    """Thresholds need the validation hold-out and the report the test set: one load (and one log line) serves both."""
    import netgrow.data

    run = _copy(runs, "one_load")
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["val_fraction"] = 0.25
    (run / "config.json").write_text(json.dumps(cfg))
    calls = []
    real = netgrow.data.load
    monkeypatch.setattr(netgrow.data, "load", lambda *a, **k: calls.append(a) or real(*a, **k))
    analyze_run(run, out_dir=tmp_path / "out", **SETTINGS)
    assert len(calls) == 1

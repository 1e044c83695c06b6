"""The `netgrow` command: config validation (exit code 2, nothing written), compare, report, run, demo."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from netgrow.cli import compare as cmp
from netgrow.cli.config import load_config, parse_config
from netgrow.analysis.runs import load_run
from netgrow.errors import ConfigError

from cli_common import TINY, run_cli, write

REPO = Path(__file__).resolve().parents[1]


CUMULATIVE = """
strategy = "cumulative"
[data]
name = "digits"
schedule = [5, 7, 10]
[cumulative]
archs = ["vgg11", "vgg13", "vgg16"]
"""


# ------------------------------------------------------------------------------------ bad configs


BAD = {
    "unknown strategy": (
        TINY.replace('strategy = "scratch"', 'strategy = "grow-fast"'),
        ["strategy = 'grow-fast'", "unknown value", "allowed: scratch, net2net, cumulative, incremental"],
    ),
    "class schedule not increasing": (
        CUMULATIVE.replace("[5, 7, 10]", "[5, 5, 10]"),
        ["data.schedule = [5, 5, 10]", "strictly increasing", "allowed: increasing class counts"],
    ),
    "architecture schedule not growing": (
        CUMULATIVE.replace('["vgg11", "vgg13", "vgg16"]', '["vgg16", "vgg11", "vgg19"]'),
        ["cumulative.archs = ['vgg16', 'vgg11', 'vgg19']", "'vgg11' cannot be grown from 'vgg16'",
         "allowed: the same family with non-decreasing depth"],
    ),
    "family change": (
        CUMULATIVE.replace('["vgg11", "vgg13", "vgg16"]', '["vgg11", "resnet20", "resnet32"]'),
        ["'resnet20' cannot be grown from 'vgg11'"],
    ),
    "missing data directory": (
        TINY.replace('name = "digits"', 'name = "fashion_mnist"\nroot = "/nonexistent/fmnist"'),
        ["data.root = '/nonexistent/fmnist'", "fashion_mnist"],
    ),
    "unknown data set": (
        TINY.replace('name = "digits"', 'name = "imagenet21k"'),
        ["data.name = 'imagenet21k'", "allowed:", "fashion_mnist"],
    ),
    "unknown train key": (
        TINY.replace("epochs = 1", "epochs = 1\nlrr = 0.1"),
        ["train.lrr = 0.1", "unknown key", "allowed:", "lr,"],
    ),
    "wrong type": (
        TINY.replace("epochs = 1", 'epochs = "ten"'),
        ["train.epochs = 'ten'", "must be an integer >= 1"],
    ),
    "unknown optimizer": (
        TINY.replace("epochs = 1", 'epochs = 1\noptimizer = "adam"'),
        ["train.optimizer = 'adam'", "sgd", "rmsprop", "adamw"],
    ),
    "unknown augmentation": (
        TINY.replace("epochs = 1", 'epochs = 1\naugment = "mixup"'),
        ["train.augment = 'mixup'", "allowed: crop_flip, crop, flip"],
    ),
    "unknown model": (
        TINY.replace('arch = "vgg11"', 'arch = "vgg9"'),
        ["model.arch = 'vgg9'", "allowed:", "vgg11", "resnet20"],
    ),
    "unknown top-level key": (
        "epoch = 3\n" + TINY,
        ["epoch = 3", "unknown key"],
    ),
    "schedule beyond the data": (
        CUMULATIVE.replace("[5, 7, 10]", "[5, 7, 12]"),
        ["data.schedule = [5, 7, 12]", "only 10 classes"],
    ),
    "width shrinking": (
        CUMULATIVE + "widths = [0.25, 0.125, 0.125]\n",
        ["widths = [0.25, 0.125, 0.125]", "must not shrink"],
    ),
    "prune ratio 1": (
        CUMULATIVE + "prune = 1.0\n",
        ["cumulative.prune = 1.0", "out of range", "[0.0, 1.0)"],
    ),
    "archs count": (
        CUMULATIVE.replace('["vgg11", "vgg13", "vgg16"]', '["vgg11", "vgg16"]'),
        ["cumulative.archs = ['vgg11', 'vgg16']", "one architecture per stage of data.schedule (3)"],
    ),
    "random pad without widening": (
        TINY.replace('strategy = "scratch"', 'strategy = "net2net"').replace("[model]", "[net2net]\n"
            'teacher_arch = "vgg11"\nstudent_arch = "vgg13"\nbaseline = "random_pad"\n[model]'),
        ["net2net.baseline = 'random_pad'", "needs student_width > teacher_width"],
    ),
    "section for another strategy": (
        TINY + "[incremental]\nws = 3\n",
        ["incremental", "does not apply to strategy 'scratch'"],
    ),
    "incremental partition": (
        'strategy = "incremental"\n[data]\nname = "digits"\n[model]\narch = "resnet20"\n'
        '[incremental]\npartition = [["stem"], ["layer2"], ["layer3"]]\n',
        ["incremental.partition", "not the next run of consecutive layers", "layer1.0"],
    ),
    "not TOML": ("strategy = scratch\n", ["not valid TOML"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_exit_2_and_nothing_written(case, tmp_path, capsys):
    text, fragments = BAD[case]
    cfg = write(tmp_path, text)
    out = tmp_path / "run"
    rc, stdout, err = run_cli(["run", cfg, "--out", out], capsys)
    assert rc == 2, err
    assert not out.exists()
    assert err.startswith("netgrow: config error:")
    for frag in fragments:
        assert frag in err, f"{frag!r} not in {err!r}"


def test_missing_config_file(tmp_path, capsys):
    rc, _, err = run_cli(["run", tmp_path / "nope.toml", "--out", tmp_path / "run"], capsys)
    assert rc == 2 and "does not exist" in err and not (tmp_path / "run").exists()


def test_existing_out_dir_is_refused_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, _, err = run_cli(["run", write(tmp_path, TINY), "--out", out], capsys)
    assert rc == 2 and "already exists" in err and "--resume" in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_resume_without_a_run_is_refused(tmp_path, capsys):
    rc, _, err = run_cli(["run", write(tmp_path, TINY), "--out", tmp_path / "run", "--resume"], capsys)
    assert rc == 2 and "holds no run to continue" in err and not (tmp_path / "run").exists()


def test_real_exit_code_from_the_installed_entry_point(tmp_path):
    cfg = write(tmp_path, TINY.replace('strategy = "scratch"', 'strategy = "magic"'))
    proc = subprocess.run([sys.executable, "-m", "netgrow.cli.main", "run", str(cfg), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "strategy = 'magic'" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_config_error_is_a_value_error_naming_the_source():
    with pytest.raises(ConfigError, match=r"my\.toml: missing required key strategy"):
        parse_config({"data": {"name": "digits"}}, source="my.toml")
    with pytest.raises(ValueError):
        parse_config({"strategy": "scratch", "data": {"name": "digits"}})  # model.arch missing


# ------------------------------------------------------------------------------------- configs


def test_shipped_configs_parse_and_are_mirrored_in_the_package():
    repo = sorted((REPO / "configs").glob("*.toml"))
    assert len(repo) >= 9
    pkg = resources.files("netgrow") / "configs"
    for path in repo:
        cfg = load_config(path)
        assert cfg.strategy in ("scratch", "net2net", "cumulative", "incremental")
        assert (pkg / path.name).read_text() == path.read_text(), f"{path.name} differs from the packaged copy"
    names = {p.name for p in repo}
    for needed in ("demo_scratch.toml", "demo_cumulative.toml", "cifar100_vgg_cumulative.toml",
                   "tinyimagenet_vgg_cumulative.toml", "cifar10_resnet_incremental.toml", "net2net_wider.toml",
                   "net2net_deeper.toml"):
        assert needed in names
    paper = load_config(REPO / "configs" / "cifar100_vgg_cumulative.toml")
    assert paper.data.schedule == (50, 70, 100) and paper.options.archs == ("vgg11", "vgg16", "vgg19")
    tin = load_config(REPO / "configs" / "tinyimagenet_vgg_cumulative.toml")
    assert tin.data.schedule == (100, 200) and tin.options.archs == ("vgg13", "vgg19")


def test_resolved_config_defaults():
    cfg = parse_config({"strategy": "cumulative", "data": {"name": "digits", "schedule": [0.5, 1.0]},
                        "model": {"width": 0.25}, "train": {"epochs": 3},
                        "cumulative": {"archs": ["vgg11", "vgg19"], "prune": 0.5}})
    assert cfg.options.widths == (0.25, 0.25) and cfg.options.epochs == (3, 3) and cfg.options.prune == (0.5,)
    assert cfg.out == "runs/cumulative" and cfg.train.seed == 0
    d = cfg.to_dict()
    assert d["cumulative"]["archs"] == ["vgg11", "vgg19"] and d["data"]["schedule"] == [0.5, 1.0]
    json.dumps(d)


# ------------------------------------------------------------------------- compare and report


def fake_run(path: Path, name: str, strategy: str, stages: list[dict]) -> Path:
    """A run directory as the Trainer + strategy write it: epoch rows, stage summaries, summary.json."""
    path.mkdir(parents=True)
    rows, summary_stages = [], []
    M_run, wall_run = 0, 0.0
    for i, st in enumerate(stages):
        stage_M, stage_wall = 0, 0.0
        for e, acc in enumerate(st["accs"], start=1):
            stage_M += st["samples"] * st["macs"]
            stage_wall += st["sec"]
            rows.append({"event": "epoch", "stage": i, "epoch": e, "test_acc": acc, "stage_M": stage_M,
                         "M": M_run + stage_M, "stage_wall_time": stage_wall, "wall_time": wall_run + stage_wall,
                         "params": st["params"], "macs_per_sample": st["macs"], "classes": st["classes"]})
        rows.append({"event": "stage_end", "stage": i, "test_acc": st["accs"][-1]})
        M_run += stage_M
        wall_run += stage_wall
        summary_stages.append({"stage": i, "name": f"s{i}", "classes": st["classes"], "arch": st["arch"],
                               "width": st["width"], "test_acc": st["accs"][-1], "epochs": len(st["accs"]),
                               "params": st["params"], "macs_per_sample": st["macs"], "M": stage_M,
                               "wall_time": stage_wall})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"event": "epo')  # torn line
    last = summary_stages[-1]
    summary = {"name": name, "strategy": strategy, "stages": summary_stages, "M_total": M_run,
               "wall_time_total": wall_run,
               "final": {k: last[k] for k in ("test_acc", "params", "macs_per_sample", "arch", "classes", "width")}}
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "config.json").write_text(json.dumps({"name": name, "strategy": strategy,
                                                  "data": {"name": "toy", "root": None, "schedule": [], "seed": 0}}))
    return path


@pytest.fixture
def two_runs(tmp_path):
    scratch = fake_run(tmp_path / "scratch", "base", "scratch", [
        {"classes": 10, "arch": "vgg19", "width": 0.125, "accs": [0.5, 0.7, 0.78, 0.80], "samples": 1000,
         "macs": 100, "sec": 10.0, "params": 5000}])
    grown = fake_run(tmp_path / "cumulative", "grown", "cumulative", [
        # 0.9 on 5 classes must not count as reaching the 10-class target
        {"classes": 5, "arch": "vgg11", "width": 0.125, "accs": [0.6, 0.9], "samples": 500, "macs": 30,
         "sec": 2.0, "params": 2000},
        {"classes": 10, "arch": "vgg19", "width": 0.125, "accs": [0.80, 0.81], "samples": 1000, "macs": 100,
         "sec": 10.0, "params": 5000}])
    return scratch, grown


def test_compare_numbers(two_runs, tmp_path):
    scratch, grown = two_runs
    md, cs, rows = cmp.compare([scratch, grown], out_dir=tmp_path / "cmp", quiet=True)
    total = {r["run"]: r for r in rows if r["stage"] == "total"}
    assert total["base"]["M"] == 400_000 and total["grown"]["M"] == 30_000 + 200_000
    assert total["grown"]["M_ratio"] == pytest.approx(230_000 / 400_000)
    # target = 0.80 - 0.005: grown reaches it at its 3rd epoch (first epoch of stage 1)
    assert total["grown"]["M_to_target"] == 30_000 + 100_000
    assert total["grown"]["wall_to_target"] == pytest.approx(2 * 2.0 + 10.0)
    assert total["base"]["M_to_target"] == 400_000  # the baseline reaches its own final accuracy at the end
    assert total["grown"]["M_ratio_at_target"] == pytest.approx(130_000 / 400_000)
    assert total["base"]["M_ratio_at_target"] == 1.0
    assert total["grown"]["arch"] == "vgg11→vgg19×0.125"
    per_stage = [r for r in rows if r["run"] == "grown" and r["stage"] != "total"]
    assert [r["classes"] for r in per_stage] == [5, 10]
    assert sum(r["M_ratio"] for r in per_stage) == pytest.approx(total["grown"]["M_ratio"])
    text = md.read_text()
    assert "| **grown** | **cumulative** | **total** | **10** |" in text
    assert "**0.57x**" in text and "**230K**" in text
    with cs.open() as f:
        back = list(csv.DictReader(f))
    assert len(back) == 5 and float(back[-1]["M"]) == 230_000 and back[-1]["stage"] == "total"


def test_compare_cli_prints_table(two_runs, tmp_path, capsys):
    scratch, grown = two_runs
    rc, out, _ = run_cli(["compare", grown, scratch, "--out", tmp_path / "o"], capsys)
    assert rc == 0
    assert "M_ratio" in out and "0.57x" in out and "1.00x" in out
    assert (tmp_path / "o" / "compare.md").is_file() and (tmp_path / "o" / "compare.csv").is_file()


def test_compare_without_scratch_has_empty_ratios(two_runs, tmp_path):
    _, grown = two_runs
    _, _, rows = cmp.compare([grown], out_dir=tmp_path / "c", quiet=True)
    assert all(r["M_ratio"] is None and r["M_to_target"] is None for r in rows)


def test_compare_not_a_run(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "metrics.jsonl").write_text("")
    rc, _, err = run_cli(["compare", tmp_path / "half"], capsys)
    assert rc == 1 and "not a finished netgrow run" in err and "--resume" in err


def test_format_count():
    assert cmp.format_count(435.4e12) == "435.4T"
    assert cmp.format_count(1.9e15) == "1.9P"
    assert cmp.format_count(999) == "999"
    assert cmp.format_count(None) == "-"


def test_epoch_rows_are_run_global(two_runs):
    run = load_run(two_runs[1])
    assert [r["global_epoch"] for r in run.epochs] == [1, 2, 3, 4]
    assert [r["run_M"] for r in run.epochs] == [15_000, 30_000, 130_000, 230_000]


def test_report_writes_three_pngs(two_runs, tmp_path, capsys):
    rc, out, _ = run_cli(["report", *two_runs, "--out", tmp_path / "plots"], capsys)
    assert rc == 0
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["accuracy_vs_epochs.png", "accuracy_vs_macs.png", "accuracy_vs_params.png"]
    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert str(p) in out


# ------------------------------------------------------------------------------ run end to end


@pytest.mark.slow
def test_run_then_resume_finished_run(tmp_path, capsys):
    cfg = write(tmp_path, TINY)
    out = tmp_path / "run"
    rc, stdout, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert rc == 0, err
    conf = json.loads((out / "config.json").read_text())
    assert conf["strategy"] == "scratch"
    assert conf["data"] == {"name": "digits", "root": None, "schedule": [10], "seed": 0, "limit_train": 200,
                            "limit_test": 100, "val_fraction": 0.1}
    summary = json.loads((out / "summary.json").read_text())
    rows = (out / "metrics.jsonl").read_text()
    rc, stdout, err = run_cli(["run", cfg, "--out", out, "--resume"], capsys)
    assert rc == 0, err
    assert json.loads((out / "summary.json").read_text())["M_total"] == summary["M_total"]
    assert (out / "metrics.jsonl").read_text() == rows  # the finished stage was loaded, not retrained
    assert "final test accuracy" in stdout
    # resuming with another config is refused
    rc, _, err = run_cli(["run", write(tmp_path, TINY.replace("epochs = 1", "epochs = 2"), "b.toml"), "--out", out,
                          "--resume"], capsys)
    assert rc == 2 and "different config" in err and "train" in err


@pytest.mark.slow
@pytest.mark.fashion
def test_demo_quick(tmp_path, capsys):
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed")
    out = tmp_path / "demo"
    rc, stdout, err = run_cli(["demo", "--quick", "--out", out, "--quiet"], capsys)
    assert rc == 0, err
    runs = {p.name for p in out.iterdir() if (p / "summary.json").is_file()}
    assert runs == {"scratch", "cumulative"}
    cum = json.loads((out / "cumulative" / "summary.json").read_text())
    assert [(s["classes"], s["arch"]) for s in cum["stages"]] == [(5, "vgg11"), (10, "vgg19")]
    scr = json.loads((out / "scratch" / "summary.json").read_text())
    assert [(s["classes"], s["arch"]) for s in scr["stages"]] == [(10, "vgg19")]
    table = (out / "compare.md").read_text()
    assert "demo-cumulative" in table and "demo-scratch" in table
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "accuracy_vs_epochs.png", "accuracy_vs_macs.png", "accuracy_vs_params.png"]

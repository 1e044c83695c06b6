"""What a newcomer sees: log lines without a terminal, no repeated messages, one clock, file modes."""

from __future__ import annotations

import io
import logging
import re
import stat

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import netgrow
from netgrow.models import create
from netgrow.train import TrainConfig, Trainer
from toy_data import blobs


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def train_once(run_dir, stream, resume=False):
    trainer = Trainer(run_dir, TrainConfig(epochs=2, batch_size=16, log_every=2), stream=stream, resume=resume)
    return trainer.run_stage(0, "small", small(), blobs(96, 0), blobs(30, 1))


def test_without_a_terminal_training_prints_plain_lines_every_log_every_steps(tmp_path):
    stream = io.StringIO()  # not a terminal, like a log file
    train_once(tmp_path, stream)
    text = stream.getvalue()
    assert "\r" not in text
    batches = re.findall(r"stage 0 \(small\) epoch (\d)/2 batch (\d)/6: train loss [\d.]+ acc [\d.]+ \| run time", text)
    assert batches == [(e, b) for e in "12" for b in "246"]


def test_epoch_and_done_lines_use_the_same_clock(tmp_path):
    stream = io.StringIO()
    train_once(tmp_path, stream)
    lines = stream.getvalue().splitlines()
    epoch_times = [float(m) for line in lines for m in re.findall(r"epoch \d step \d+: .* run time ([\d.]+) s$", line)]
    done = next(line for line in lines if " done: " in line)
    done_time = float(re.search(r"run time ([\d.]+) s \(stage ([\d.]+) s\)", done).group(1))
    assert len(epoch_times) == 2 and done_time >= epoch_times[-1] >= epoch_times[0]


def test_resume_of_a_finished_stage_is_announced_once(tmp_path, caplog):
    train_once(tmp_path, io.StringIO())
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="netgrow"):
        train_once(tmp_path, stream, resume=True)
    said = stream.getvalue() + caplog.text
    assert said.count("finished earlier") == 1 and "finished before" not in said


def test_loading_a_grown_model_does_not_repeat_the_growth_messages(tmp_path, caplog):
    x = torch.randn(2, 1, 8, 8)
    model = create("mlp", width=0.25, in_channels=1, input_size=8)
    model = netgrow.widen(model, {"features.1": 64}, example_input=x)
    netgrow.save(model, tmp_path / "m.safetensors")
    with caplog.at_level(logging.INFO, logger="netgrow"):
        netgrow.load(tmp_path / "m.safetensors")
    assert "widen:" not in caplog.text


def test_one_runs_outputs_share_one_file_mode(tmp_path):
    train_once(tmp_path, io.StringIO())
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*") if p.is_file()}
    assert "metrics.jsonl" in modes and "checkpoints/last.safetensors" in modes and "stages/stage0.json" in modes
    assert len(set(modes.values())) == 1, modes


# ----------------------------------------------------------------------------- compare / report


def _fake_run(run_dir, name, strategy, stages):
    """A minimal finished run directory (what netgrow.analysis.runs.load_run reads)."""
    import json

    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"name": name, "strategy": strategy, "data": {"name": "x"}}))
    rows, summaries, m = [], [], 0
    for i, (arch, classes, params, acc) in enumerate(stages):
        m += 10**9
        rows.append({"event": "epoch", "stage": i, "epoch": 1, "global_epoch": i + 1, "test_acc": acc, "M": m,
                     "wall_time": 1.0 + i, "params": params, "classes": classes})
        summaries.append({"stage": i, "arch": arch, "width": 0.125, "classes": classes, "test_acc": acc, "M": 10**9,
                          "M_cumulative": m, "wall_time": 1.0, "params": params, "macs_per_sample": 10**6})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "summary.json").write_text(json.dumps({
        "name": name, "strategy": strategy, "stages": summaries, "M_total": m, "wall_time_total": float(len(stages)),
        "final": {"test_acc": stages[-1][3], "classes": stages[-1][1], "params": stages[-1][2],
                  "macs_per_sample": 10**6}}))
    return run_dir


@pytest.fixture
def demo_like_runs(tmp_path):
    cum = _fake_run(tmp_path / "demo-cumulative", "demo-cumulative", "cumulative",
                    [("vgg11", 5, 367_200, 0.95), ("vgg16", 7, 585_200, 0.93), ("vgg19", 10, 795_900, 0.90)])
    scr = _fake_run(tmp_path / "demo-scratch", "demo-scratch", "scratch", [("vgg19", 10, 795_900, 0.90)])
    return cum, scr


def test_printed_comparison_table_fits_100_columns(demo_like_runs, tmp_path, capsys):
    from netgrow.cli.main import main

    assert main(["compare", *map(str, demo_like_runs), "--out", str(tmp_path / "cmp")]) == 0
    table = capsys.readouterr().out.split("wrote ")[0]
    assert "vgg11→vgg16→vgg19×0.125" in table and "1.00x" in table
    assert max(len(line) for line in table.splitlines()) <= 100, table


def test_compare_and_report_refuse_to_overwrite_without_force(demo_like_runs, tmp_path, capsys):
    from netgrow.cli.main import main

    runs = list(map(str, demo_like_runs))
    for command, out, files in (("compare", tmp_path / "c", ["compare.md"]), ("report", tmp_path / "p",
                                                                            ["accuracy_vs_params.png"])):
        assert main([command, *runs, "--out", str(out), "--quiet"]) == 0
        (out / files[0]).write_bytes(b"edited by hand")
        assert main([command, *runs, "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "already exist" in err and "--force" in err and str(out / files[0]) in err
        assert (out / files[0]).read_bytes() == b"edited by hand"  # untouched
        assert main([command, *runs, "--out", str(out), "--quiet", "--force"]) == 0
        assert (out / files[0]).read_bytes() != b"edited by hand"


def test_accuracy_vs_params_plot_has_labelled_ticks_and_no_hidden_marker(demo_like_runs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from netgrow.cli.report import params_plot
    from netgrow.analysis.runs import load_run

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    params_plot(ax, [load_run(p) for p in demo_like_runs])
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels == ["367.2K", "585.2K", "795.9K"]
    cum, scr = ax.get_lines()[:2]
    # the scratch point sits on the cumulative run's last point: distinct markers, hollow, the later one larger
    assert (cum.get_xdata()[-1], cum.get_ydata()[-1]) == (scr.get_xdata()[0], scr.get_ydata()[0])
    assert cum.get_marker() != scr.get_marker() and scr.get_fillstyle() == "none"
    assert scr.get_markersize() > cum.get_markersize()


# ----------------------------------------------------------------------------- analysis and demo messages


def test_analysis_progress_names_the_model_and_writes_lines_not_bars_to_a_log_file(capsys, caplog):
    from netgrow.analysis import noise_robustness

    model = nn.Linear(2, 2)
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    with caplog.at_level(logging.INFO, logger="netgrow"):
        noise_robustness(model, (x, y), sigmas=[0.0, 1.0], draws=2, progress="grown, vgg19")
    assert "noise (grown, vgg19): 3 evaluation(s)" in caplog.text
    assert "\r" not in capsys.readouterr().err  # pytest's stderr is not a terminal: no carriage-return bar


def test_demo_loads_its_data_set_once(monkeypatch):
    from netgrow import data
    from netgrow.cli import demo

    calls = []

    def fake_load(name, root=None):
        calls.append(name)
        # enough samples for the demo's batch size in every stage (checked before anything runs)
        ds = TensorDataset(torch.zeros(1280, 1, 28, 28), torch.arange(1280) % 10)
        ds.num_classes = 10
        return ds, ds

    monkeypatch.setattr(data, "load", fake_load)
    resolved = demo._with_data(demo.demo_configs(quick=True))
    assert calls == ["fashion_mnist"] and len(resolved) == 2
    assert resolved[0][1] is resolved[1][1]

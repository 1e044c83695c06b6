"""Strategies end to end on tiny models and scikit-learn's digits (8x8 images, a few hundred of them)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import netgrow
from netgrow import models
from netgrow.cli.config import parse_config, validate_resources
from netgrow.strategies import plan, run_experiment
from netgrow.strategies.angle import AngleStopping
from netgrow.strategies.base import Experiment
from netgrow.strategies.incremental import IncrementalNet, partition
from netgrow.train.macs import count_macs

DATA = {"name": "digits", "limit_train": 200, "limit_test": 100, "seed": 3}
TRAIN = {"epochs": 1, "batch_size": 50, "lr": 0.05, "deterministic": True}
X = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def config(strategy: str, **sections):
    raw = {"strategy": strategy, "name": strategy, "seed": 1, "data": dict(DATA), "train": dict(TRAIN)}
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    cfg, train, test = validate_resources(parse_config(raw))
    return cfg, train, test


def run(cfg, train, test, out: Path, **kw):
    return run_experiment(cfg, out, train, test, quiet=True, **kw)


def stage_files(out: Path, i: int):
    return json.loads((out / "stages" / f"stage{i}.json").read_text()), netgrow.load(out / "stages" / f"stage{i}.safetensors")


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_meter_sums(summary: dict, out: Path) -> None:
    """M in the summary = Σ of the stage meters the Trainer wrote; each meter's M = samples × MACs/sample."""
    meters = [json.loads((out / "stages" / f"stage{i}.json").read_text())["meter"] for i in range(len(summary["stages"]))]
    assert summary["M_total"] == sum(m["M"] for m in meters) > 0
    for s, m in zip(summary["stages"], meters):
        assert s["M"] == m["M"] == m["samples"] * m["macs_per_sample"]


@pytest.fixture
def capture(monkeypatch):
    """Record (stage name, copy of the model before training, model after) for every stage run."""
    seen: list[tuple[str, nn.Module, nn.Module]] = []
    original = Experiment.run_stage

    def wrapper(self, index, stage, model, **kw):
        before = copy.deepcopy(model)
        result = original(self, index, stage, model, **kw)
        seen.append((stage.name, before, copy.deepcopy(result.model)))  # later stages train it in place
        return result

    monkeypatch.setattr(Experiment, "run_stage", wrapper)
    return seen


def eval_logits(model: nn.Module) -> torch.Tensor:
    m = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        return m(X)


# ---------------------------------------------------------------------------------------- scratch


@pytest.mark.slow
def test_scratch(tmp_path):
    cfg, train, test = config("scratch", model={"arch": "vgg11", "width": 0.0625})
    out = tmp_path / "scratch"
    summary = run(cfg, train, test, out)
    assert [(s["arch"], s["classes"], s["epochs"]) for s in summary["stages"]] == [("vgg11", 10, 1)]
    info, model = stage_files(out, 0)
    assert models.architecture(model) == "vgg11" and model(X).shape == (16, 10)
    assert shapes(model) == shapes(models.create("vgg11", num_classes=10, width=0.0625, in_channels=1, input_size=8))
    check_meter_sums(summary, out)
    conf = json.loads((out / "config.json").read_text())
    assert conf["strategy"] == "scratch" and conf["data"]["schedule"] == [10] and conf["data"]["seed"] == 3


# ------------------------------------------------------------------------------------- cumulative


CUM = {"archs": ["vgg11", "vgg13", "vgg16"], "widths": [0.0625, 0.0625, 0.125]}


@pytest.mark.slow
def test_cumulative_stages_architectures_and_function_preservation(tmp_path, capture):
    cfg, train, test = config("cumulative", data={"schedule": [4, 7, 10]}, cumulative=CUM)
    out = tmp_path / "cum"
    summary = run(cfg, train, test, out)
    planned = [(s.arch, s.classes, s.width) for s in plan(cfg, [4, 7, 10])]
    assert planned == [("vgg11", 4, 0.0625), ("vgg13", 7, 0.0625), ("vgg16", 10, 0.125)]
    assert [(s["arch"], s["classes"], s["width"]) for s in summary["stages"]] == planned
    for i, (arch, k, w) in enumerate(planned):
        info, model = stage_files(out, i)
        assert models.architecture(model) == arch
        assert model(X).shape == (16, k)  # the output layer grew with the classes
        fresh = models.create(arch, num_classes=k, width=w, in_channels=1, input_size=8)
        assert shapes(model) == shapes(fresh)  # grown = a plain family member of that width
        assert info["info"]["classes"] == k and info["info"]["arch"] == arch
    check_meter_sums(summary, out)
    assert summary["stages"][1]["growth_ops"] == ["grow:vgg13", "expand:7"]
    assert summary["stages"][2]["growth_ops"] == ["grow:vgg16", "widen:0.125:net2net", "expand:10"]
    # Net2Net growth between stages preserves the old classes' logits (eval mode)
    assert [name for name, _, _ in capture] == [s.name for s in plan(cfg, [4, 7, 10])]
    for i in (1, 2):
        trained_prev, grown = capture[i - 1][2], capture[i][1]
        k_prev = planned[i - 1][1]
        assert torch.allclose(eval_logits(grown)[:, :k_prev], eval_logits(trained_prev), atol=1e-4)
    # class order: stage i's classes are the first K_i of the run's order, in every metrics row
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    order = rows[-1]["class_order"]
    assert sorted(order) == list(range(10))
    assert all(r["class_order"] == order[: r["classes"]] for r in rows)


RESUME_CASES = {
    "scratch": (dict(model={"arch": "vgg11", "width": 0.0625}, train={"epochs": 2}), 0),
    "cumulative": (dict(data={"schedule": [5, 10]},
                        cumulative={"archs": ["vgg11", "vgg13"], "widths": 0.0625, "epochs": [1, 2]}), 1),
    "net2net": (dict(net2net={"teacher_arch": "vgg11", "teacher_width": 0.0625, "student_arch": "vgg13",
                              "student_width": 0.125, "student_epochs": 2}), 1),
    "incremental": (dict(model={"arch": "vgg11", "width": 0.0625},
                         incremental={"max_epochs": 2, "lookahead_epochs": 1, "partition": [
                             ["features.0", "features.1", "features.2", "features.3"],
                             ["features.4", "features.5", "features.6", "features.7", "features.8", "features.9",
                              "features.10", "features.11", "features.12", "features.13", "features.14",
                              "features.15", "features.16", "features.17", "features.18", "features.19",
                              "features.20", "features.21", "features.22", "features.23", "features.24",
                              "features.25", "features.26", "features.27", "features.28"]]}), 2),
    # one warmup-stable-decay schedule across the stages: stage 0 ends at its validation plateau (or budget)
    # at the stable rate, stage 1 decays over its last 2 epochs; killed inside the decay
    "cumulative-wsd": (dict(data={"schedule": [5, 10]}, train={"schedule": "wsd", "cross_stage": True,
                                                                 "warmup_epochs": 0.5, "decay_epochs": 2,
                                                                 "plateau_patience": 1},
                            cumulative={"archs": ["vgg11", "vgg13"], "widths": 0.0625, "epochs": [3, 3]}), 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(RESUME_CASES))
def test_resume_from_mid_stage_checkpoint(strategy, tmp_path, monkeypatch):
    sections, kill_stage = RESUME_CASES[strategy]
    cfg, train, test = config(strategy.split("-")[0], **sections)
    full = run(cfg, train, test, tmp_path / "full")

    from netgrow.train import checkpoint as ckpt

    class Killed(Exception):
        pass

    save_last = ckpt.save_last

    def dying_save(ckpt_dir, tensors, meta):
        path = save_last(ckpt_dir, tensors, meta)
        if meta.get("stage") == kill_stage and meta.get("epoch") == 1:
            raise Killed  # the process dies right after this stage's first epoch checkpoint
        return path

    monkeypatch.setattr(ckpt, "save_last", dying_save)
    with pytest.raises(Killed):
        run(cfg, train, test, tmp_path / "killed")
    monkeypatch.setattr(ckpt, "save_last", save_last)
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = run(cfg, train, test, tmp_path / "killed", resume=True)

    assert resumed["M_total"] == full["M_total"]
    assert [s["test_acc"] for s in resumed["stages"]] == [s["test_acc"] for s in full["stages"]]
    last = len(full["stages"]) - 1
    if strategy == "incremental":  # a user-defined module: load its state directly
        from netgrow.train import safe_io

        sa = safe_io.read(tmp_path / "full" / "stages" / f"stage{last}.safetensors")[0]
        sb = safe_io.read(tmp_path / "killed" / "stages" / f"stage{last}.safetensors")[0]
    else:
        sa = stage_files(tmp_path / "full", last)[1].state_dict()
        sb = stage_files(tmp_path / "killed", last)[1].state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    rows = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    full_rows = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    epochs = [(r["stage"], r["epoch"]) for r in rows if r["event"] == "epoch"]
    assert epochs == [(r["stage"], r["epoch"]) for r in full_rows if r["event"] == "epoch"]  # none twice
    assert (kill_stage, 2) in epochs


@pytest.mark.slow
def test_cumulative_prune_and_zero_mask(tmp_path):
    cumulative = {"archs": ["vgg11", "vgg13"], "widths": 0.125, "prune": 0.5, "zero_mask": True}
    cfg, train, test = config("cumulative", data={"schedule": [5, 10]}, cumulative=cumulative)
    out = tmp_path / "zm"
    summary = run(cfg, train, test, out)
    check_meter_sums(summary, out)
    last = summary["stages"][1]
    assert last["growth_ops"] == ["prune:0.5", "grow:vgg13", "expand:10"]
    dense = models.create("vgg13", num_classes=10, width=0.125, in_channels=1, input_size=8)
    assert last["params"] < 0.6 * sum(p.numel() for p in dense.parameters())
    names = last["masked_params"]
    assert len(names) == 2 and all(n.endswith(".weight") for n in names)  # vgg11 -> vgg13 inserts 2 convs
    _, model = stage_files(out, 1)
    params = dict(model.named_parameters())
    for n in names:
        w = params[n]
        # an identity kernel has one non-zero per output channel (its centre tap); the rest stayed zero
        assert int((w != 0).sum()) <= w.shape[0]
    masks = {n: params[n].detach() == 0 for n in names}
    assert sum(int(m.sum()) for m in masks.values()) == last["masked_entries"]
    # skipping the masked zeros lowers the MAC count by exactly (masked entries x output positions)
    positions: dict[str, int] = {}
    hooks = [model.get_submodule(n[: -len(".weight")]).register_forward_hook(
        lambda m, i, o, n=n: positions.__setitem__(n, o.shape[-1] * o.shape[-2])) for n in names]
    with torch.no_grad():
        model.eval()(X[:1])
    for h in hooks:
        h.remove()
    expected = sum(int(masks[n].sum()) * positions[n] for n in names)
    assert count_macs(model, X[:1]) - count_macs(model, X[:1], masks=masks) == expected > 0
    assert last["macs_per_sample_dense"] - last["macs_per_sample_masked"] == expected
    assert last["macs_per_sample"] == last["macs_per_sample_masked"]  # the Trainer's meter skipped them too


# ---------------------------------------------------------------------------------------- net2net


@pytest.mark.slow
@pytest.mark.parametrize("case", ["wider", "deeper", "random_pad", "random_init"])
def test_net2net(case, tmp_path, capture):
    n2n = {
        "wider": {"teacher_arch": "vgg11", "teacher_width": 0.0625, "student_arch": "vgg11", "student_width": 0.125},
        "deeper": {"teacher_arch": "vgg11", "teacher_width": 0.0625, "student_arch": "vgg13", "student_width": 0.0625},
        "random_pad": {"teacher_arch": "vgg11", "teacher_width": 0.0625, "student_arch": "vgg11",
                       "student_width": 0.125, "baseline": "random_pad"},
        "random_init": {"teacher_arch": "vgg11", "teacher_width": 0.0625, "student_arch": "vgg13",
                        "student_width": 0.125, "baseline": "random_init"},
    }[case]
    cfg, train, test = config("net2net", net2net=n2n)
    out = tmp_path / case
    summary = run(cfg, train, test, out)
    check_meter_sums(summary, out)
    roles = [s["name"].split("-")[0] for s in summary["stages"]]
    assert roles == (["student"] if case == "random_init" else ["teacher", "student"])
    info, student = stage_files(out, len(roles) - 1)
    assert models.architecture(student) == n2n["student_arch"]
    fresh = models.create(n2n["student_arch"], num_classes=10, width=n2n["student_width"], in_channels=1, input_size=8)
    assert shapes(student) == shapes(fresh)
    lr = TRAIN["lr"] if case == "random_init" else TRAIN["lr"] * 0.1  # Net2Net: the student gets lr / 10
    assert info["lr"] == pytest.approx(lr)
    if case == "random_init":
        return
    teacher_out, student_in = eval_logits(capture[0][2]), eval_logits(capture[1][1])
    gap = float((teacher_out - student_in).abs().max())
    if case == "random_pad":
        assert gap > 1e-3  # random new units change the function
    else:
        assert gap < 1e-4  # function-preserving


# ------------------------------------------------------------------------------------ incremental


@pytest.mark.slow
def test_incremental_lookahead_trains_only_the_new_block(tmp_path, capture):
    cfg, train, test = config("incremental", model={"arch": "vgg11", "width": 0.0625},
                              incremental={"max_epochs": 1, "lookahead_epochs": 1})
    out = tmp_path / "inc"
    summary = run(cfg, train, test, out)
    check_meter_sums(summary, out)
    names = [s["name"] for s in summary["stages"]]
    assert names == ["phase-S1-1", "lookahead-S2", "phase-S1-2", "lookahead-S3", "phase-S1-3", "lookahead-S4",
                     "phase-S1-4"]
    assert [s.name for s in plan(cfg, [10])] == names
    params = [s["params"] for s in summary["stages"] if s["name"].startswith("phase")]
    assert params == sorted(params) and len(set(params)) == 4
    target = models.create("vgg11", num_classes=10, width=0.0625, in_channels=1, input_size=8)
    assert params[-1] == sum(p.numel() for p in target.parameters())  # all K sub-networks = the target
    final = capture[-1][2]
    assert count_macs(final, X[:1]) == count_macs(target, X[:1])
    assert [p["subnetworks"] for p in summary["extra"]["accuracy_vs_params"]] == [1, 2, 3, 4]
    for name, before, after in capture:
        if not name.startswith("lookahead"):
            continue
        k = int(name[len("lookahead-S"):])
        old_b, old_a = before.blocks[: k - 1].state_dict(), after.blocks[: k - 1].state_dict()
        changed = [key for key in old_b if not torch.equal(old_b[key], old_a[key].cpu())]
        assert changed == []  # weights and BN statistics
        new_b, new_a = before.blocks[k - 1].state_dict(), after.blocks[k - 1].state_dict()
        assert any(not torch.equal(new_b[key], new_a[key].cpu()) for key in new_b if key.endswith("weight"))
        # the phase after a look-ahead trains everything
    phase2 = next(c for c in capture if c[0] == "phase-S1-2")
    assert not torch.equal(phase2[1].blocks[0][0].weight, phase2[2].blocks[0][0].weight.cpu())


@pytest.mark.slow
def test_incremental_random_init_and_early_stop(tmp_path):
    cfg, train, test = config("incremental", model={"arch": "resnet20", "width": 0.125},
                              incremental={"max_epochs": 1, "init": "random", "min_gain": 1e12})
    summary = run(cfg, train, test, tmp_path / "inc")
    # min_gain is unreachable: growth stops after the second sub-network; no look-ahead stages
    assert [s["name"] for s in summary["stages"]] == ["phase-S1-1", "phase-S1-2"]
    assert summary["extra"]["stopped_growth"]["after_subnetworks"] == 2
    assert summary["extra"]["partition"] == [["stem", "layer1.0", "layer1.1", "layer1.2"],
                                             ["layer2.0", "layer2.1", "layer2.2"], ["layer3.0", "layer3.1", "layer3.2"]]


def test_incremental_partition_by_width_and_by_names():
    vgg16 = models.create("vgg16", width=0.0625)
    groups = partition(vgg16, "width")
    convs = [[i for i in g if isinstance(vgg16.get_submodule(i), nn.Conv2d)] for g in groups]
    assert [len(c) for c in convs] == [2, 2, 3, 6]  # 64 | 128 | 256 | 512 channels
    r = models.create("resnet20")
    assert partition(r, [["stem", "layer1"], ["layer2", "layer3"]]) == [
        ["stem", "layer1.0", "layer1.1", "layer1.2"], ["layer2.0", "layer2.1", "layer2.2", "layer3.0", "layer3.1", "layer3.2"]]
    with pytest.raises(ValueError, match="leaves layers"):
        partition(r, [["stem"], ["layer1"]])
    with pytest.raises(ValueError, match="not a layer of the target"):
        partition(r, [["stem"], ["layer4"]])


def test_incremental_net_keeps_frozen_blocks_in_eval_mode():
    net = IncrementalNet([nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), nn.Sequential(nn.BatchNorm2d(2))],
                         nn.AdaptiveAvgPool2d(1), nn.Linear(2, 3))
    net.frozen = 1
    net.train()
    assert not net.blocks[0].training and not net.blocks[0][1].training and net.blocks[1].training
    net.frozen = 0
    net.train()
    assert net.blocks[0][1].training


def test_plans():
    cfg, _, _ = config("cumulative", data={"schedule": [4, 7, 10]},
                       cumulative={**CUM, "epochs": [3, 2, 1], "lr_factor": 0.5, "prune": [0.5, 0.0]})
    stages = plan(cfg, [4, 7, 10])
    assert [(s.arch, s.classes, s.epochs, s.lr, s.data_index) for s in stages] == [
        ("vgg11", 4, 3, 0.05, 0), ("vgg13", 7, 2, 0.025, 1), ("vgg16", 10, 1, 0.025, 2)]
    assert [s.info["prune_before"] for s in stages] == [0.0, 0.5, 0.0]
    cfg, _, _ = config("incremental", model={"arch": "resnet20"}, incremental={"ws": 4, "gamma": 0.3})
    stages = plan(cfg, [10])
    assert len(stages) == 5
    assert all(isinstance(s.stopping, AngleStopping) and s.stopping.ws == 4 and s.stopping.gamma == 0.3
               for s in stages if s.name.startswith("phase"))

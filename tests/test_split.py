"""netgrow.data.split: the validation hold-out is disjoint, stratified, seed-stable; experiments carve it."""

from __future__ import annotations

import pytest
import torch

from netgrow.data import InMemoryDataset, split, split_indices
from netgrow.errors import ConfigError


def toy(n_per_class=(50, 30, 20)) -> InMemoryDataset:
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    x = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    return InMemoryDataset(x, y, [f"c{c}" for c in range(len(n_per_class))], "toy")


def test_split_is_disjoint_complete_and_stratified():
    ds = toy()
    train, val = split(ds, 0.1, seed=0)
    tr_ids = set(train.data[:, 0, 0, 0].long().tolist())  # every sample's x encodes its index
    va_ids = set(val.data[:, 0, 0, 0].long().tolist())
    assert not tr_ids & va_ids and tr_ids | va_ids == set(range(100))
    assert torch.bincount(val.targets).tolist() == [5, 3, 2]  # 10 % of each class
    assert torch.bincount(train.targets).tolist() == [45, 27, 18]
    assert ds.data.shape[0] == 100  # the parent is untouched


def test_split_is_seed_stable_and_seed_dependent():
    y = torch.arange(1000) % 10
    a = split_indices(y, 0.2, seed=4)
    b = split_indices(y, 0.2, seed=4)
    c = split_indices(y, 0.2, seed=5)
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    assert len(a[1]) == 200 and torch.bincount(y[a[1]]).tolist() == [20] * 10
    unstrat = split_indices(y, 0.2, seed=4, stratify=False)[1]
    assert len(unstrat) == 200


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fractions(fraction):
    with pytest.raises(ConfigError, match=f"fraction={fraction}"):
        split(toy(), fraction)


def test_experiment_holds_out_validation_and_rows_carry_both(tmp_path):
    from netgrow.cli.config import parse_config, validate_resources
    from netgrow.strategies import run_experiment

    raw = {"strategy": "scratch", "name": "s", "seed": 0,
           "data": {"name": "digits", "limit_train": 200, "limit_test": 100, "val_fraction": 0.25},
           "model": {"arch": "mlp"}, "train": {"epochs": 2, "batch_size": 50}}
    cfg, train, test = validate_resources(parse_config(raw))
    assert cfg.data.val_fraction == 0.25
    run_experiment(cfg, tmp_path, train, test, quiet=True)
    import json

    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["event"] == "epoch"]
    assert len(epochs) == 2 and all(r["val_acc"] is not None and r["test_acc"] is not None for r in epochs)
    meter = json.loads((tmp_path / "stages" / "stage0.json").read_text())["meter"]
    assert meter["samples"] == 2 * 150  # 200 training images minus the 50 held out, two epochs


def test_val_fraction_is_validated():
    from netgrow.cli.config import parse_config

    with pytest.raises(ConfigError, match="val_fraction"):
        parse_config({"strategy": "scratch", "data": {"name": "digits", "val_fraction": 1.0}, "model": {"arch": "mlp"}})


def test_cumulative_budget_fractions_of_a_total():
    from netgrow.cli.config import parse_config

    base = {"strategy": "cumulative", "data": {"name": "digits", "schedule": [4, 7, 10]}, "model": {"width": 0.0625}}
    cfg = parse_config({**base, "cumulative": {"archs": ["vgg11", "vgg13", "vgg16"], "budget_fractions": [0.6, 0.2, 0.25],
                                               "total_epochs": 12}})
    assert cfg.options.epochs == (7, 2, 3)
    with pytest.raises(ConfigError, match="budget_fractions"):
        parse_config({**base, "cumulative": {"archs": ["vgg11", "vgg13", "vgg16"], "budget_fractions": [0.5, 0.5]}})
    with pytest.raises(ConfigError, match="conflicts with cumulative.epochs"):
        parse_config({**base, "cumulative": {"archs": ["vgg11", "vgg13", "vgg16"], "budget_fractions": [1, 1, 1],
                                             "epochs": 2}})


def test_model_init_he_is_selected_by_the_config(tmp_path):
    from netgrow.cli.config import parse_config, validate_resources
    from netgrow.strategies.base import Experiment

    raw = {"strategy": "scratch", "data": {"name": "digits", "limit_train": 100, "limit_test": 50},
           "model": {"arch": "vgg11", "width": 0.0625, "init": "he"}, "train": {"epochs": 1}}
    cfg, train, test = validate_resources(parse_config(raw))
    exp = Experiment(cfg, tmp_path, train, test, quiet=True)
    he = exp.create("vgg11", 10, 0.0625)
    default = Experiment(cfg.replace(model=type(cfg.model)(arch="vgg11", width=0.0625)), tmp_path / "b", train, test,
                         quiet=True).create("vgg11", 10, 0.0625)
    assert float(he.features[0].bias.detach().abs().max()) == 0.0 and float(default.features[0].bias.detach().abs().max()) > 0
    again = exp.create("vgg11", 10, 0.0625)
    assert all(torch.equal(a, b) for a, b in zip(he.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ConfigError, match="init"):
        parse_config({**raw, "model": {"arch": "vgg11", "init": "xavier"}})


@pytest.mark.parametrize("extra, needle", [
    ({"stopping": {"rule": "plateau"}}, "stopping.rule = 'plateau'"),
    ({"train": {"schedule": "wsd"}}, "train.schedule = 'wsd'"),
    ({"train": {"plateau_patience": 2}}, "train.plateau_patience"),
])
def test_deciding_without_a_validation_split_is_refused_before_anything_runs(extra, needle):
    from netgrow.cli.config import parse_config

    raw = {"strategy": "scratch", "data": {"name": "digits", "val_fraction": 0.0}, "model": {"arch": "mlp"}, **extra}
    with pytest.raises(ConfigError, match=needle):
        parse_config(raw)
    assert parse_config({**raw, "data": {"name": "digits"}}).data.val_fraction == 0.1

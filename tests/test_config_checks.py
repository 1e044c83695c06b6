"""Everything checkable from the config and the data is refused before the run directory exists (exit 2,
the key named); ``--set`` overrides for new runs and for ``--resume`` (recorded in history.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from netgrow.cli.config import apply_overrides, load_config, parse_override
from netgrow.cli.main import check_out_dir
from netgrow.errors import ConfigError

from cli_common import TINY, run_cli, write


def train_line(extra: str) -> str:
    return TINY.replace("deterministic = true", extra)


# config text, extra command-line arguments, fragments the message must contain, fragments it must not
BAD = {
    "boolean as a string": (train_line('deterministic = "false"'), [],
                            ["train.deterministic = 'false'", "must be a boolean", "true, false"], []),
    "infinite warm-up": (train_line("warmup_epochs = inf"), [], ["train.warmup_epochs = inf", "finite"], []),
    "nan learning rate": (train_line("lr = nan"), [], ["train.lr = nan", "finite"], []),
    "betas not a list": (train_line('betas = "ab"'), [], ["train.betas = 'ab'", "must be a list"], ["[train]"]),
    "betas out of range": (train_line("betas = [0.9, 1.5]"), [], ["train.betas = [0.9, 1.5]", "[0, 1)"], []),
    "misspelt train key": (TINY.replace("epochs = 1", "epochz = 1"), [],
                           ["train.epochz = 1", "unknown key", "did you mean 'epochs'?"], []),
    "misspelt optimizer": (train_line('optimizer = "adamv"'), [],
                           ["train.optimizer = 'adamv'", "did you mean 'adamw'?"], []),
    "misspelt top-level key": ("sed = 3\n" + TINY, [], ["sed = 3", "did you mean 'seed'?"], []),
    "batch larger than the limited set": (TINY.replace("batch_size = 50", "batch_size = 500"), [],
                                          ["train.batch_size = 500", "data.limit_train = 200", "200"], []),
    "limit_train = 3": (TINY.replace("limit_train = 200", "limit_train = 3"), [],
                        ["train.batch_size = 50", "data.limit_train = 3"], []),
    "batch larger than the first stage": (
        TINY.replace('strategy = "scratch"', 'strategy = "cumulative"').replace("limit_train = 200", "schedule = [2, 10]")
        .replace('[model]\narch = "vgg11"', '[cumulative]\narchs = ["vgg11", "vgg13"]\n[model]')
        .replace("batch_size = 50", "batch_size = 1000"),
        [], ["train.batch_size = 1000", "first 2 classes"], []),
    "override with a bad value": (TINY, ["--set", "train.deterministic=yes"],
                                  ["train.deterministic = 'yes'", "must be a boolean", "--set train.deterministic=yes"],
                                  []),
    "misspelt override": (TINY, ["--set", "train.epochz=2"], ["did you mean 'epochs'?", "--set train.epochz=2"], []),
    "override into a value": (TINY, ["--set", "seed.x=1"], ["--set 'seed.x=1'", "is a value, not a table"], []),
    "override without a value": (TINY, ["--set", "train.lr"], ["--set 'train.lr'", "KEY=VALUE"], []),
}
BAD["augmenting 1-D data"] = (
    TINY.replace('name = "digits"', 'name = "mnist1d"').replace('arch = "vgg11"', 'arch = "cnn1d"')
    .replace("deterministic = true", 'augment = "crop_flip"'), [],
    ["train.augment = 'crop_flip'", "needs images", "omit augment"], [])
if not torch.cuda.is_available():
    BAD["cuda without a GPU"] = (train_line('device = "cuda"'), [],
                                 ["train.device = 'cuda'", "no CUDA device", "'cpu'"], [])


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_exit_2_names_the_key_and_creates_nothing(case, tmp_path, capsys):
    text, extra, fragments, absent = BAD[case]
    out = tmp_path / "run"
    rc, _, err = run_cli(["run", write(tmp_path, text), "--out", out, *extra], capsys)
    assert rc == 2, err
    assert not out.exists()
    errors = [line for line in err.splitlines() if line.startswith("netgrow:")]  # (data sets may log a line)
    assert len(errors) == 1 and errors[0].startswith("netgrow: config error:"), err
    for frag in fragments:
        assert frag in err, f"{frag!r} not in {err!r}"
    for frag in absent:
        assert frag not in err, f"{frag!r} in {err!r}"


def test_a_directory_as_the_config(tmp_path, capsys):
    rc, _, err = run_cli(["run", tmp_path, "--out", tmp_path / "run"], capsys)
    assert rc == 2 and "is a directory" in err and ".toml" in err
    assert not (tmp_path / "run").exists()


def test_out_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in ("/proc/netgrow-test/x", blocker / "run"):
        rc, _, err = run_cli(["run", write(tmp_path, TINY), "--out", out], capsys)
        assert rc == 2, err
        assert "--out" in err and str(out) in err and "Traceback" not in err
        assert not Path(out).exists()


def test_out_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = run_cli(["run", write(tmp_path, TINY), "--out", blocker], capsys)
    assert rc == 2 and "is a file" in err and blocker.read_text() == "x"


def test_a_failed_start_does_not_block_the_corrected_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    check_out_dir(out, resume=False)  # only start files: reusable
    (out / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match="already exists"):
        check_out_dir(out, resume=False)


def test_overrides_are_parsed_as_toml_values():
    assert parse_override("train.lr=0.01") == (["train", "lr"], 0.01)
    assert parse_override("train.deterministic = false") == (["train", "deterministic"], False)
    assert parse_override("data.schedule=[5, 10]") == (["data", "schedule"], [5, 10])
    assert parse_override("train.device=cpu") == (["train", "device"], "cpu")
    raw = {"train": {"lr": 0.1}}
    assert apply_overrides(raw, ["train.lr=0.01", "seed=3", "stopping.rule=plateau"]) == {
        "train": {"lr": 0.01}, "seed": 3, "stopping": {"rule": "plateau"}}
    assert raw == {"train": {"lr": 0.1}}  # the file's dict is not changed


def test_overrides_for_a_new_run(tmp_path):
    cfg = load_config(write(tmp_path, TINY), ["train.lr=0.01", "seed=3", "train.optimizer=adamw"])
    assert cfg.train.lr == 0.01 and cfg.seed == 3 and cfg.train.optimizer == "adamw"
    assert cfg.train.seed == 3  # [train] seed follows the top-level seed unless given


def test_new_train_fields_need_no_parsing_code(tmp_path):
    """Every TrainConfig field is accepted in [train] with its type checked, without a parser entry."""
    import dataclasses

    from netgrow.train import TrainConfig

    cfg = load_config(write(tmp_path, TINY), ["train.log_every=7", "train.drop_last=true",
                                              "train.checkpoint_every=3", "train.eval_batch_size=64"])
    assert (cfg.train.log_every, cfg.train.drop_last, cfg.train.checkpoint_every, cfg.train.eval_batch_size) == (
        7, True, 3, 64)
    for f in dataclasses.fields(TrainConfig):
        if f.type in ("bool",) or f.type == bool:
            with pytest.raises(ConfigError, match=f"train.{f.name} = 'true'.*boolean"):
                load_config(write(tmp_path, TINY), [f"train.{f.name}='true'"])


@pytest.mark.slow
def test_resume_with_a_deliberate_change_is_recorded(tmp_path, capsys):
    """The NaN route: a run whose loss becomes NaN, resumed with a lower learning rate."""
    cfg = write(tmp_path, TINY.replace("epochs = 1", "epochs = 2\nlr = 1e12"))
    out = tmp_path / "run"
    rc, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert rc == 1 and "nan" in err.lower()
    assert f"--resume --set train.lr=" in err  # the message names the route
    rc, _, err = run_cli(["run", cfg, "--out", out, "--quiet", "--resume", "--set", "train.lr=0.01"], capsys)
    assert rc == 0, err
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[1]["changes"] == {"train.lr": {"from": 1e12, "to": 0.01}}
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 0.01
    stage = json.loads((out / "stages" / "stage0.json").read_text())
    assert stage["lr"] == 0.01 and stage["epochs"] == 2
    # the file still says 1e12: resuming without the override is refused, naming the key and the fix
    rc, _, err = run_cli(["run", cfg, "--out", out, "--resume"], capsys)
    assert rc == 2 and "train.lr: run 0.01, now 1000000000000.0" in err and "--set train.lr=0.01" in err
    # any other difference is still refused, even with the override repeated
    other = write(tmp_path, TINY.replace("epochs = 1", "epochs = 3\nlr = 1e12"), "other.toml")
    rc, _, err = run_cli(["run", other, "--out", out, "--resume", "--set", "train.lr=0.01"], capsys)
    assert rc == 2 and "train.epochs: run 2, now 3" in err and "train.lr" not in err.split("allowed")[0]
    assert len((out / "history.jsonl").read_text().splitlines()) == 2  # refused resumes record nothing


@pytest.mark.slow
def test_new_run_with_overrides_records_them(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(["run", write(tmp_path, TINY), "--out", out, "--quiet", "--set", "train.lr=0.01",
                          "--set", "seed=3"], capsys)
    assert rc == 0, err
    conf = json.loads((out / "config.json").read_text())
    assert conf["seed"] == 3 and conf["train"]["lr"] == 0.01 and conf["train"]["seed"] == 3
    (start,) = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert start["event"] == "start" and start["overrides"] == ["seed", "train.lr"]
    # a resume that repeats the overrides is the same config; changing the seed on resume is deliberate
    rc, _, err = run_cli(["run", write(tmp_path, TINY), "--out", out, "--quiet", "--resume", "--set", "train.lr=0.01",
                          "--set", "seed=4"], capsys)
    assert rc == 0, err
    last = json.loads((out / "history.jsonl").read_text().splitlines()[-1])
    assert last["changes"] == {"seed": {"from": 3, "to": 4}, "train.seed": {"from": 3, "to": 4}}


def test_resume_accepts_a_run_written_before_a_field_existed(tmp_path):
    """A key missing from a stored config.json meant its default then; it is not a difference."""
    from netgrow.strategies.run_config import write_config

    cfg = load_config(write(tmp_path, TINY))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = cfg.to_dict()
    del old["train"]["log_every"], old["data"]["limit_test"]  # as written by an older netgrow
    (run_dir / "config.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match=r"data.limit_test: run None, now 100"):
        write_config(cfg, run_dir, resume=True)  # limit_test = 100 is not the default: a real change
    old["data"]["limit_test"] = 100
    (run_dir / "config.json").write_text(json.dumps(old))
    write_config(cfg, run_dir, resume=True)  # log_every is at its default: accepted
    assert json.loads((run_dir / "config.json").read_text())["train"]["log_every"] == cfg.train.log_every


def test_ddp_batch_must_split_over_the_ranks(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    from netgrow.errors import ConfigError as Err
    from netgrow.strategies.resources import check_stage_data

    cfg = load_config(write(tmp_path, TINY))  # batch_size = 50
    with pytest.raises(Err, match="train.batch_size = 50 does not split evenly over 3 DDP ranks"):
        check_stage_data(cfg, None, None, [10])


@pytest.mark.parametrize("field", ["lr", "warmup_epochs", "momentum", "gamma", "label_smoothing"])
def test_train_config_refuses_non_finite_numbers_from_the_api(field):
    from netgrow.train import TrainConfig

    for bad in (float("inf"), float("nan")):
        with pytest.raises(ConfigError, match=f"{field}=.* use a finite number"):
            TrainConfig(**{field: bad})
    with pytest.raises(ConfigError, match="betas=.* use a finite number"):
        TrainConfig(betas=(0.9, float("nan")))

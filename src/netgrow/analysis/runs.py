"""Reading run directories: the one ``Run`` reader of ``netgrow compare``, ``report``, ``analyze`` and the
benchmarks -- summary, config and epoch rows (:func:`load_run`), plus the stage models and the test set
they were scored on for the analysis (:func:`open_run`).

Layout read (see the interface contracts)::

    RUN_DIR/summary.json                per-stage rows and totals (M_total, final, ...)
    RUN_DIR/metrics.jsonl               epoch rows (run-global epoch and M are added here)
    RUN_DIR/config.json                {"data": {"name", "root", "schedule", "seed", "limit_test"}, ...}
    RUN_DIR/stages/stage{i}.safetensors   the model at the end of stage i (netgrow.load)
    RUN_DIR/stages/stage{i}.json          {"info": {"classes": K_i, "arch", "class_order": [...]}, "test_acc", ...}

The test set is rebuilt exactly as the strategies build it: ``netgrow.data.load(name, root)``, the
seeded ``limit_test`` cut (seed ``data.seed + 1``), then the classes of the final stage in the run's
recorded class order (``info.class_order``: the original label of each label; when a stage summary
does not record it, ``netgrow.data.nested_subsets(test, [K], seed=data.seed)`` gives it).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netgrow.errors import CheckpointError, ConfigError, DataError, NetgrowValueError

log = logging.getLogger(__name__)

_STAGE_FILE = re.compile(r"^stage(\d+)\.safetensors$")


@dataclass
class StageModel:
    """One stage of a run: its model and what its summary recorded."""

    index: int
    path: Path
    model: nn.Module
    summary: dict[str, Any]
    classes: int | None  # K_i recorded in the summary's info (None: not recorded)
    class_order: list[int] | None
    recorded_acc: float | None  # summary "test_acc" (reported only)
    val_acc: float | None = None  # summary "val_acc" (decisions: mutual-inference weights)

    @property
    def arch(self) -> str | None:
        return (self.summary.get("info") or {}).get("arch")


@dataclass
class Run:
    """One run directory: its summary, resolved config and epoch rows (with run-global epoch and M), and
    -- when opened with :func:`open_run` -- its stage models."""

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    models: list[StageModel] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.path

    @property
    def name(self) -> str:
        return str(self.summary.get("name") or self.config.get("name") or self.path.name)

    @property
    def strategy(self) -> str:
        return str(self.summary.get("strategy") or self.config.get("strategy") or "?")

    @property
    def stages(self) -> list[dict[str, Any]]:
        """The summary's per-stage rows."""
        return list(self.summary.get("stages", []))

    @property
    def M_total(self) -> int:  # noqa: N802 - the paper's symbol
        return int(self.summary.get("M_total", sum(s.get("M", 0) for s in self.stages)))

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.config.get("data") or {})

    @property
    def data_name(self) -> str:
        return str(self.data.get("name"))

    @property
    def data_root(self) -> str | None:
        return self.data.get("root")

    @property
    def data_seed(self) -> int:
        return int(self.data.get("seed", 0) or 0)

    @property
    def limit_test(self) -> int | None:
        n = self.data.get("limit_test")
        return int(n) if isinstance(n, int) and not isinstance(n, bool) else None

    @property
    def limit_train(self) -> int | None:
        n = self.data.get("limit_train")
        return int(n) if isinstance(n, int) and not isinstance(n, bool) else None

    @property
    def val_fraction(self) -> float:
        """The run's validation hold-out of the training set (0: none)."""
        return float(self.data.get("val_fraction", 0.0) or 0.0)

    @property
    def final(self) -> StageModel:
        """The model of the last stage (``open_run`` only)."""
        return self.models[-1]


def canonical_data_name(name: str) -> str:
    """Data set names compare case- and dash-insensitively (``Fashion-MNIST`` == ``fashion_mnist``)."""
    key = name.strip().lower().replace("-", "_")
    return {"fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist"}.get(key, key)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"netgrow.analysis: {what} {str(path)!r} is not valid JSON ({exc}); restore it from the run"
        ) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"netgrow.analysis: {what} {str(path)!r} must hold a JSON object")
    return obj


def read_config(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/config.json`` with a ``data`` section naming the data set."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(
            f"netgrow.analysis: {str(path)!r} not found; analyze needs a run directory written by `netgrow run` "
            "(config.json records the data set and class schedule the stage models were trained on)"
        )
    cfg = _read_json(path, "config")
    data = cfg.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        raise ConfigError(
            f"netgrow.analysis: {str(path)!r} has no data.name (got data={data!r}); the config must say "
            'which data set the run used, e.g. {"data": {"name": "fashion_mnist", "schedule": [5, 7, 10]}}'
        )
    return cfg


def _stage_files(run_dir: Path) -> list[tuple[int, Path]]:
    stages_dir = run_dir / "stages"
    found = []
    if stages_dir.is_dir():
        for p in stages_dir.iterdir():
            m = _STAGE_FILE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    found.sort()
    if not found:
        raise CheckpointError(
            f"netgrow.analysis: {str(stages_dir)!r} holds no stage checkpoints (stage0.safetensors, ...); "
            "mutual inference and the robustness analysis need the model saved at the end of every stage. "
            "Let the run finish a stage (resume it with `netgrow run CONFIG --resume`) and analyze again"
        )
    indices = [i for i, _ in found]
    missing = sorted(set(range(indices[-1] + 1)) - set(indices))
    if missing:
        raise CheckpointError(
            f"netgrow.analysis: {str(stages_dir)!r} has stage checkpoints {indices} but is missing stage(s) "
            f"{missing}; every stage model is needed for mutual inference — restore the missing files or "
            "rerun the run"
        )
    return found


def _as_int_list(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise DataError(
            f"netgrow.analysis: {where}: class_order must be a list of original class labels, got {value!r}"
        )
    return list(value)


def open_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """Read config, stage summaries and stage models of ``run_dir`` (models on ``device``, eval mode)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"netgrow.analysis: run directory {str(run_dir)!r} does not exist")
    cfg = read_config(run_dir)
    from netgrow.train.serialization import load  # lazy: the train package is heavier than analysis needs

    stages: list[StageModel] = []
    for index, path in _stage_files(run_dir):
        summary_path = path.with_name(f"stage{index}.json")
        summary = _read_json(summary_path, "stage summary") if summary_path.is_file() else {}
        if not summary:
            log.warning("%s: no stage summary next to the checkpoint (an unfinished stage?); using the model anyway",
                        summary_path)
        info = summary.get("info") or {}
        acc = summary.get("test_acc")
        val = summary.get("val_acc")
        model = load(path, map_location=device)
        model.eval()
        stages.append(StageModel(
            index=index,
            path=path,
            model=model,
            summary=summary,
            classes=int(info["classes"]) if isinstance(info.get("classes"), int) else None,
            class_order=_as_int_list(info.get("class_order"), str(summary_path)),
            recorded_acc=float(acc) if isinstance(acc, (int, float)) else None,
            val_acc=float(val) if isinstance(val, (int, float)) else None,
        ))
    summary_path = run_dir / "summary.json"
    summary = _read_json(summary_path, "summary") if summary_path.is_file() else {}
    return Run(run_dir, summary, cfg, epoch_rows(run_dir / "metrics.jsonl"), stages)


def check_stage_classes(run: Run, num_outputs: list[int]) -> list[int]:
    """The K_i of every stage (its number of outputs), checked against the summaries and for nesting."""
    ks = []
    for st, k in zip(run.models, num_outputs):
        if st.classes is not None and st.classes != k:
            raise CheckpointError(
                f"netgrow.analysis: {str(st.path)!r} has {k} outputs but its summary says it was trained on "
                f"{st.classes} classes; the checkpoint and stage{st.index}.json do not belong together"
            )
        ks.append(k)
    if any(b < a for a, b in zip(ks, ks[1:])):
        raise DataError(
            f"netgrow.analysis: {str(run.run_dir)!r}: the stage models have {ks} classes; mutual inference needs "
            "nested class sets K_1 <= K_2 <= ... (a cumulative run)"
        )
    orders = [(st, st.class_order) for st in run.models if st.class_order is not None]
    final_order = run.final.class_order
    if final_order is not None:
        for st, order in orders:
            if order != final_order[: len(order)]:
                raise DataError(
                    f"netgrow.analysis: stage {st.index} of {str(run.run_dir)!r} was trained on class order "
                    f"{order} but the final stage on {final_order}; the stage models do not share their labels, "
                    "so they cannot vote together"
                )
    return ks


@dataclass
class TestSet:
    """The run's final-stage test set: normalised inputs, inputs scaled to [0, 1], labels, and scaling."""

    x: torch.Tensor  # normalised, what the models see
    u: torch.Tensor  # the raw input scaled to [0, 1] (what FGSM perturbs)
    y: torch.Tensor
    mean_u: tuple[float, ...]  # x = (u - mean_u) / std_u per channel
    std_u: tuple[float, ...]
    class_order: list[int]  # original label of each label
    class_names: list[str]
    raw_range: tuple[float, float]
    total_classes: int  # classes of the whole data set


def load_run_data(run: Run) -> tuple[Any, Any]:
    """The run's data set as ``(train, test)``, loaded once so an analysis that needs both its test and its
    validation samples reads (and announces) the data set one time."""
    from netgrow.data import load as load_data

    try:
        return load_data(run.data_name, root=run.data_root)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"netgrow.analysis: cannot load the run's data set {run.data_name!r} (root={run.data_root!r}): {exc}"
        ) from exc


def load_test_set(run: Run, num_classes: int, max_samples: int | None = None, seed: int = 0,
                  split: str = "test", data: tuple[Any, Any] | None = None) -> TestSet:
    """The test samples of the run's final ``num_classes`` classes, labelled as the run labelled them.

    ``split="val"``: the run's validation hold-out instead (the same seeded cut of the training set the
    run made: ``data.limit_train``, then ``netgrow.data.split(val_fraction, seed=data.seed)``), for the
    decisions of an analysis (e.g. no-decision thresholds). ``data``: the ``(train, test)`` pair of
    :func:`load_run_data` when the caller has it already (it is not modified)."""
    from netgrow.data import nested_subsets
    from netgrow.strategies.base import limit  # the strategies' own seeded cut of limit_train / limit_test

    train, test = data if data is not None else load_run_data(run)
    if not (hasattr(test, "select") and hasattr(test, "data") and hasattr(test, "normalize")):
        raise DataError(
            f"netgrow.analysis: the test set of {run.data_name!r} is not held in memory ({type(test).__name__}); "
            "the analysis needs the raw inputs — load the data set with in_memory=True"
        )
    if split == "val":
        if not run.val_fraction > 0:
            raise DataError(f"netgrow.analysis: the run {str(run.run_dir)!r} was trained without a validation split "
                            "([data] val_fraction = 0)")
        from netgrow.data import split as split_data

        train = limit(train, run.limit_train, run.data_seed)
        test = split_data(train, run.val_fraction, seed=run.data_seed)[1]
    else:  # the same seeded cut as the strategies make (data.seed + 1)
        test = limit(test, run.limit_test, run.data_seed + 1)
    order = run.final.class_order
    if order is None:
        order = list(nested_subsets(test, [num_classes], seed=run.data_seed)[0].class_order)
    order = order[:num_classes]
    if len(order) != num_classes or len(set(order)) != num_classes or not all(0 <= o < test.num_classes for o in order):
        raise DataError(
            f"netgrow.analysis: the final stage's class order {order} does not name {num_classes} distinct classes "
            f"of {run.data_name!r} ({test.num_classes} classes); was the run trained on another data set?"
        )
    label_map = torch.full((test.num_classes,), -1, dtype=torch.int64)
    label_map[torch.tensor(order)] = torch.arange(num_classes)
    idx = torch.nonzero(label_map[test.targets] >= 0).flatten()
    sub = test.select(idx, label_map=label_map, classes=[test.classes[o] for o in order], class_order=order)
    if max_samples is not None and max_samples < len(sub):
        gen = torch.Generator().manual_seed(int(seed))
        sub = sub.select(torch.randperm(len(sub), generator=gen)[:max_samples].sort().values)
    if len(sub) == 0:
        raise DataError(f"netgrow.analysis: the test set of {run.data_name!r} has no sample of the run's classes")
    x, y = sub.tensors()
    raw = sub.data
    if raw.dtype == torch.uint8:
        # exactly the first step of InMemoryDataset.normalize, so ε = 0 reproduces the clean inputs bit for bit
        u = raw.to(torch.float32) / 255.0
        lo, hi = 0.0, 1.0
    else:
        lo, hi = float(raw.min()), float(raw.max())
        hi = hi if hi > lo else lo + 1.0
        u = (raw.to(torch.float32) - lo) / (hi - lo)
    span = hi - lo
    mean_u = tuple((m - lo) / span for m in sub.mean)
    std_u = tuple(s / span for s in sub.std)
    return TestSet(x=x, u=u, y=y, mean_u=mean_u, std_u=std_u, class_order=list(order),
                   class_names=list(sub.classes), raw_range=(lo, hi), total_classes=int(test.num_classes))


class PermutedOutputs(nn.Module):
    """``model(x)[:, index]``: a baseline's outputs reordered into the analysed run's class order."""

    def __init__(self, model: nn.Module, index: list[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("index", torch.tensor(index, dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out.index_select(1, self.index.to(out.device))


def check_same_data(run: Run, baseline: Run) -> None:
    """The run and its baseline must come from the same data set (names compared canonically)."""
    if canonical_data_name(run.data_name) != canonical_data_name(baseline.data_name):
        raise DataError(
            f"netgrow.analysis: the run {str(run.run_dir)!r} was trained on {run.data_name!r} but the baseline "
            f"{str(baseline.run_dir)!r} on {baseline.data_name!r}; compare runs on the same data set"
        )


def align_baseline(run: Run, baseline: Run, test: TestSet, baseline_outputs: int) -> nn.Module:
    """The baseline's final model with outputs in the run's class order; errors if the data differ."""
    check_same_data(run, baseline)
    b_order = baseline.final.class_order
    if b_order is None:
        from netgrow.data import class_order as seeded_order

        b_order = seeded_order(test.total_classes, baseline.data_seed)
    b_order = b_order[:baseline_outputs]
    run_order = test.class_order
    if sorted(b_order) != sorted(run_order) or baseline_outputs != len(run_order):
        raise DataError(
            f"netgrow.analysis: the baseline's final model knows the classes {sorted(b_order)} but the run's final "
            f"model {sorted(run_order)}; the comparison needs both trained on the same classes "
            "(give the baseline the run's final class count)"
        )
    return PermutedOutputs(baseline.final.model, [b_order.index(c) for c in run_order])


# ------------------------------------------------------------------- summary, config and epoch rows


def load_run(path: str | Path) -> Run:
    """Read a run directory; a clear error when it is not one."""
    path = Path(path)
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        hint = " (the run has not finished; resume it with `netgrow run CONFIG --resume --out DIR`)" if (
            path / "metrics.jsonl").is_file() else ""
        raise NetgrowValueError(f"{str(path)!r} is not a finished netgrow run: no summary.json{hint}")
    try:
        summary = json.loads(summary_path.read_text())
        config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    except json.JSONDecodeError as exc:
        raise NetgrowValueError(f"{str(path)!r}: corrupted JSON ({exc})") from None
    return Run(path, summary, config, epoch_rows(path / "metrics.jsonl"))


def epoch_rows(path: Path) -> list[dict[str, Any]]:
    """The ``"event": "epoch"`` rows of a metrics file, each with ``global_epoch`` (1, 2, ... across stages)
    and ``run_M`` (forward MACs of training so far in the whole run, from the per-stage ``stage_M``)."""
    if not path.is_file():
        return []
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of a killed run
        if row.get("event") == "epoch":
            rows[(int(row.get("stage", 0)), int(row.get("epoch", 0)))] = row  # a re-logged epoch: keep the last
    ordered = [rows[k] for k in sorted(rows)]
    stage_M_done: dict[int, float] = {}
    stage_wall_done: dict[int, float] = {}
    out = []
    for i, row in enumerate(ordered, start=1):
        s = int(row.get("stage", 0))
        stage_M = float(row.get("stage_M", row.get("M", 0)) or 0)
        stage_wall = float(row.get("stage_wall_time", row.get("wall_time", 0)) or 0)
        before = sum(v for k, v in stage_M_done.items() if k < s)
        wall_before = sum(v for k, v in stage_wall_done.items() if k < s)
        stage_M_done[s] = stage_M
        stage_wall_done[s] = stage_wall
        r = dict(row)
        r["global_epoch"] = i
        r["run_M"] = before + stage_M if "stage_M" in row else float(row.get("M", 0) or 0)
        r["run_wall_time"] = wall_before + stage_wall if "stage_wall_time" in row else float(row.get("wall_time", 0) or 0)
        out.append(r)
    return out


def compute_to_target(run: Run, target_acc: float, classes: int | None = None) -> dict[str, Any] | None:
    """The first epoch at which ``run`` reaches ``target_acc`` (fraction): its run-global epoch, M and wall
    time; ``None`` when it never does.

    ``classes``: only epochs evaluated on that many classes count (an early cumulative stage is scored on
    a subset of the classes, so its accuracy is not comparable with the full task's).
    """
    for r in run.epochs:
        acc = r.get("test_acc")
        if classes is not None and r.get("classes") is not None and int(r["classes"]) != classes:
            continue
        if acc is not None and float(acc) >= target_acc:
            return {"epoch": r["global_epoch"], "M": r["run_M"], "wall_time": r["run_wall_time"],
                    "stage": r.get("stage"), "test_acc": float(acc)}
    return None


def pick_baseline(runs: list[Run], baseline: Run | None = None) -> Run | None:
    """The explicit baseline, else the first scratch run among ``runs``, else None."""
    if baseline is not None:
        return baseline
    return next((r for r in runs if r.strategy == "scratch"), None)

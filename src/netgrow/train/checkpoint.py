"""Epoch and stage checkpoints: everything needed to continue a run exactly, never pickled.

One file = safetensors tensors + a JSON header (:mod:`netgrow.train.safe_io`, atomic writes):

- model weights (``model.<name>``) and the model spec (base config + growth log) in the header under
  ``"model"`` (:func:`netgrow.train.serialization.model_to_tensors`, so ``netgrow.load`` reads it);
- optimizer state: tensors as ``optim.<index>.<key>``, ``param_groups`` (with ``param_names``) and
  non-tensor state in the header; the GradScaler state in the header;
- RNG states: torch (``rng.torch``), CUDA (``rng.cuda.<i>``), numpy (``rng.numpy``) and python (header);
- progress (header): stage, name, completed epochs, batch position within the epoch, optimizer step,
  the stage's history and meter; the partial-epoch metric sums as ``acc.<name>`` tensors.

Epoch checkpoints go to ``checkpoints/last.safetensors``; before a new one is written the previous one
is renamed to ``last.prev.safetensors``, so a truncated or corrupted ``last`` (a disk filled up, a file
copied half-way) falls back to ``prev`` with a warning. Stage checkpoints: ``stages/stage{i}.safetensors``
(the model alone, readable by :func:`netgrow.load`), ``stages/stage{i}.state.safetensors`` (optimizer and
RNG at the end of the stage) and ``stages/stage{i}.json`` (the summary, written last: it marks the stage
as finished).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from netgrow.errors import CheckpointError
from netgrow.train import safe_io
from netgrow.train.serialization import model_to_tensors

log = logging.getLogger(__name__)

LAST = "last.safetensors"
PREV = "last.prev.safetensors"
MODEL = "model."
OPTIM = "optim."
ACC = "acc."


# ---------------------------------------------------------------- model


def model_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model's ``state_dict`` under the ``model.`` prefix and its meta (spec, class), as
    :func:`netgrow.train.serialization.model_to_tensors` writes them, so ``netgrow.load`` reads checkpoints."""
    return model_to_tensors(model, prefix=MODEL)


def load_model_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load ``model.*`` tensors into ``model`` strictly; a clear error if the architecture differs."""
    state = {k[len(MODEL) :]: v for k, v in tensors.items() if k.startswith(MODEL)}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {extra[:5]}" if extra else "",
                "shape differs for " + ", ".join(f"{k} {tuple(own[k].shape)} vs {tuple(state[k].shape)}" for k in wrong[:5])
                if wrong
                else "",
            )
            if part
        )
        raise CheckpointError(
            f"checkpoint {source!r} does not fit the model passed to run_stage ({detail}); on resume, re-apply "
            "exactly the growth ops (same seeds) that built this stage's model before calling run_stage"
        )
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k].to(dtype=v.dtype))


# ---------------------------------------------------------------- optimizer


def optimizer_to_tensors(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten ``optimizer.state_dict()`` into tensors and a JSON-serialisable dict."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIM}{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Rebuild an ``optimizer.state_dict()`` from :func:`optimizer_to_tensors` output."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith(OPTIM):
            continue
        idx, key = name[len(OPTIM) :].split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, entries in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entries)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": dict(sorted(state.items())), "param_groups": groups}


# ---------------------------------------------------------------- RNG


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Torch, CUDA, numpy and python RNG states as tensors + JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    version, pstate, gauss = random.getstate()
    meta = {
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
        "python": [version, list(pstate), gauss],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, pstate, gauss = meta["python"]
    random.setstate((version, tuple(pstate), gauss))


# ---------------------------------------------------------------- files


def state_payload(
    model: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: Any | None,
    progress: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors + header of a training-state checkpoint (``model=None``: without weights)."""
    tensors: dict[str, torch.Tensor] = {}
    model_meta = None
    if model is not None:
        model_t, model_meta = model_tensors(model)
        tensors.update(model_t)
    opt_t, opt_meta = optimizer_to_tensors(optimizer.state_dict())
    tensors.update(opt_t)
    rng_t, rng_meta = rng_state()
    tensors.update(rng_t)
    tensors.update({ACC + k: v for k, v in (extra_tensors or {}).items()})
    meta = {
        "kind": "netgrow.train_state",
        **progress,
        "optimizer": opt_meta,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_meta,
    }
    if model_meta is not None:
        meta["model"] = model_meta
    return tensors, meta


def save_last(ckpt_dir: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write the epoch checkpoint ``last``, keeping the previous one as ``last.prev``."""
    ckpt_dir = Path(ckpt_dir)
    last = ckpt_dir / LAST
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if last.is_file():
            os.replace(last, ckpt_dir / PREV)
    except OSError as exc:
        raise safe_io.storage_error(last, exc) from None
    return safe_io.write_atomic(last, tensors, meta)


def load_last(ckpt_dir: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path] | None:
    """The newest readable epoch checkpoint ``(tensors, meta, path)``, or None when there is none.

    A truncated/corrupted ``last`` is reported with a warning and ``last.prev`` is used instead; if both
    are unreadable a ``CheckpointError`` says so.
    """
    ckpt_dir = Path(ckpt_dir)
    errors = []
    for name in (LAST, PREV):
        path = ckpt_dir / name
        if not path.is_file():
            continue
        try:
            tensors, meta = safe_io.read(path)
        except CheckpointError as exc:
            log.warning("%s; falling back to the previous checkpoint", exc)
            errors.append(str(exc))
            continue
        if meta.get("kind") != "netgrow.train_state":
            errors.append(f"{path} is not a training-state checkpoint")
            log.warning("%s is not a netgrow training-state checkpoint; skipping it", path)
            continue
        if name == PREV:
            log.warning("resuming from the previous checkpoint %s", path)
        return tensors, meta, path
    if errors:
        raise CheckpointError(
            f"no readable checkpoint in {str(ckpt_dir)!r}: {' | '.join(errors)}; start the run again without resume"
        )
    return None


def restore_state(
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    model: nn.Module | None,
    optimizer: torch.optim.Optimizer | None,
    scaler: Any | None,
    source: str,
) -> dict[str, torch.Tensor]:
    """Load weights, optimizer, scaler and RNG states; returns the ``acc.*`` tensors (prefix removed)."""
    if model is not None:
        load_model_tensors(model, tensors, source)
    if optimizer is not None:
        sd = optimizer_from_tensors(tensors, meta["optimizer"])
        try:
            optimizer.load_state_dict(sd)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(
                f"checkpoint {source!r}: optimizer state does not fit this stage's optimizer ({exc}); "
                "resume with the same config and `trainable` filter"
            ) from None
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    set_rng_state(tensors, meta["rng"])
    return {k[len(ACC) :]: v for k, v in tensors.items() if k.startswith(ACC)}


def stage_paths(stages_dir: str | os.PathLike[str], stage: int) -> tuple[Path, Path, Path]:
    """``(model file, state file, summary json)`` of stage ``stage``."""
    d = Path(stages_dir)
    return d / f"stage{stage}.safetensors", d / f"stage{stage}.state.safetensors", d / f"stage{stage}.json"

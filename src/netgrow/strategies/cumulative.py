"""Cumulative training with Net2Net expansion (Feng & Panda, Algorithm 1; sections III-IV.B).

Stage i trains Net_i on the nested subset D_i (the first K_i classes of a seeded class order). Between
stages, in this order:

1. optional L1-norm filter pruning of the trained Net_i with ratio ``prune[i]`` (section IV.B, Table 2);
2. Net2DeeperNet growth to the next architecture (``netgrow.models.grow``, e.g. vgg11 -> vgg16) and/or
   Net2WiderNet growth to the next width multiplier;
3. ``expand_classes`` to K_{i+1} outputs: the old logits unchanged, new rows random (section III.A);
4. training on D_{i+1} with ``train.lr * lr_factor`` until the stopping rule or the epoch budget.

Cross-stage schedule (``[train] schedule = "wsd"``, ``cross_stage = true``): one warm-up in stage 0, the
stable rate through every growth step (the optimizer state carried through the growth chain's ParamMap),
each stage before the last ending at its validation plateau, the decay only in the last stage.

Kernel-level pruning (``prune_mode = "kernel"``): instead of removing filters, the ``prune[i]`` fraction of
2-D conv kernels with the smallest L1 norm over all conv layers (``netgrow.ops.kernel_prune``) is set to
zero and held there by a mask through the next stage (the paper's R = pruned kernels / all kernels;
widths unchanged); the MAC count skips them.

Zero mask (``zero_mask = true``, Table 2 "keep Net2Net zero mask"): the exact zeros of the kernels inserted
by a growth step (the zero surround of Net2DeeperNet's identity kernels) are passed to the Trainer as masks
and stay zero in every later stage; the MAC count then skips them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netgrow.errors import ConfigError
from netgrow.strategies import growth as g
from netgrow.strategies.base import Growth, Stage
from netgrow.strategies.experiment import check_growth, known_models
from netgrow.strategies.registry import ParseContext, Strategy
from netgrow.strategies.schema import Section, check_float, int_check
from netgrow.strategies.scratch import stopping_rule

if TYPE_CHECKING:
    from netgrow.strategies.base import Experiment
    from netgrow.strategies.experiment import ExperimentConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CumulativeConfig:
    """``[cumulative]``: Algorithm 1 of Feng & Panda: one stage per entry of ``data.schedule``."""

    archs: tuple[str, ...]
    widths: tuple[float, ...]
    epochs: tuple[int, ...]
    prune: tuple[float, ...]  # prune[i]: L1 pruning ratio R applied to Net_i before growing it
    prune_mode: str = "filter"  # "filter": remove filters (widths shrink); "kernel": zero 2-D kernels, masked next stage
    zero_mask: bool = False
    zero_mask_mode: str = "all"  # "all" zeros of the inserted kernels, or only their "surround" taps
    lr_factor: float = 1.0  # lr of stages >= 2 = train.lr * lr_factor
    carry_optimizer: bool = False
    noise: float = 0.0  # Net2WiderNet noise when a stage widens


def parse(s: Section, ctx: ParseContext) -> CumulativeConfig:
    """Read ``[cumulative]``: one architecture (and width, epoch budget) per stage of ``data.schedule``."""
    n = len(ctx.data.schedule)
    if n < 2:
        raise ConfigError(f"{s.source}: data.schedule = {list(ctx.data.schedule)!r}: cumulative training needs "
                          f"at least two stages; allowed: an increasing list of class counts, e.g. [5, 7, 10]")
    archs = s.raw("archs", None)
    models = known_models()
    if not isinstance(archs, list) or len(archs) != n:
        raise s.fail("archs", archs, f"needs one architecture per stage of data.schedule ({n})",
                     f"a list of {n} names from {', '.join(models)}")
    for a in archs:
        if a not in models:
            raise s.fail("archs", archs, f"unknown model {a!r}", ", ".join(models))
    model = ctx.model
    if model.arch is not None and model.arch != archs[-1]:
        raise ConfigError(f"{s.source}: model.arch = {model.arch!r} differs from the last entry of "
                          f"cumulative.archs ({archs[-1]!r}); allowed: omit model.arch or set it to {archs[-1]!r}")
    widths = s.per_stage("widths", n, model.width, lambda x, fail: check_float(x, 0.0, 64.0, True, False, fail))
    check_growth(list(archs), [float(w) for w in widths], "cumulative.archs", s.source)
    fractions = s.raw("budget_fractions", None)
    if fractions is not None:  # per-stage budgets as fractions of a total
        if s.has("epochs"):
            raise s.fail("budget_fractions", fractions, "conflicts with cumulative.epochs",
                         "either epochs (per stage) or budget_fractions with total_epochs")
        ok = isinstance(fractions, list) and len(fractions) == n and all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in fractions)
        if not ok:
            raise s.fail("budget_fractions", fractions, f"needs {n} positive numbers (one per stage)",
                         "e.g. [0.6, 0.2, 0.2]: stage i trains round(f_i * total_epochs) epochs")
        total = s.int_("total_epochs", default=ctx.epochs, lo=1)
        ep: tuple[int, ...] = tuple(max(1, round(float(f) * total)) for f in fractions)
    else:
        ep = s.per_stage("epochs", n, ctx.epochs, int_check(1))
    prune_raw = s.raw("prune", 0.0)
    prune = prune_raw if isinstance(prune_raw, list) else [prune_raw] * (n - 1)
    if len(prune) != n - 1:
        raise s.fail("prune", prune_raw, f"needs one ratio per growth step ({n - 1})",
                     f"a single ratio or a list of {n - 1} ratios in [0, 1)")
    for r in prune:
        check_float(r, 0.0, 1.0, False, True, lambda p, a: s.fail("prune", prune_raw, p, a))
    out = CumulativeConfig(
        archs=tuple(archs), widths=tuple(float(w) for w in widths), epochs=tuple(ep),
        prune=tuple(float(r) for r in prune),
        prune_mode=s.str_("prune_mode", default="filter", choices=("filter", "kernel")),
        zero_mask=s.bool_("zero_mask", False),
        zero_mask_mode=s.str_("zero_mask_mode", default="all", choices=("all", "surround")),
        lr_factor=s.float_("lr_factor", default=1.0, lo=0.0, lo_open=True),
        carry_optimizer=s.bool_("carry_optimizer", False),
        noise=s.float_("noise", default=0.0, lo=0.0),
    )
    s.done()
    return out


def first_models(cfg: "ExperimentConfig") -> list[tuple[str, str, float]]:
    return [("cumulative.archs", cfg.options.archs[0], cfg.options.widths[0])]


def plan(cfg: "ExperimentConfig", class_counts: list[int]) -> list[Stage]:
    """One stage per entry of the class schedule, with the planned architecture and width."""
    opt = cfg.options
    lr = float(cfg.train.lr)
    return [
        Stage(name=f"stage{i}-{arch}-{k}cls", classes=k, arch=arch, width=opt.widths[i], epochs=opt.epochs[i],
              data_index=i, lr=lr if i == 0 else lr * opt.lr_factor, stopping=stopping_rule(cfg),
              info={"prune_before": opt.prune[i - 1] if i > 0 else 0.0})
        for i, (k, arch) in enumerate(zip(class_counts, opt.archs))
    ]


def expand(exp: "Experiment", before: Any, prev: Stage, st: Stage, step: int, ratio: float,
           pruned: bool) -> Growth:
    """Net2Net expansion of the trained ``before`` (stage ``prev``) into stage ``st``'s network:
    prune (``ratio > 0``) -> grow to ``st.arch`` -> widen to ``st.width`` -> expand the output layer.

    ``pruned`` says whether the net was pruned at an earlier step (then widening goes by the width
    factor, not to a fresh model's widths). Returns the chain; ``chain.result()`` is the new model."""
    from netgrow import ops

    seed = exp.cfg.seed * 1000 + step
    chain = Growth(before)
    if ratio > 0:
        chain.apply(f"prune:{ratio:g}", ops.prune, ratio, exp.example_for(before))
    if st.arch != prev.arch:
        g.grow_depth(exp, chain, st.arch, st.data_index)
    if st.width > prev.width:
        g.grow_width(exp, chain, st.arch, prev.width, st.width, classes=prev.classes, noise=exp.cfg.options.noise,
                     seed=seed, pruned=pruned or ratio > 0)
    chain.apply(f"expand:{st.classes}", ops.expand_classes, st.classes, exp.example_for(chain.model), seed=seed)
    return chain


def run(exp: "Experiment") -> None:
    """Run Algorithm 1 over the planned stages."""
    from netgrow.train.macs import count_macs

    opt = exp.cfg.options
    stages = plan(exp.cfg, exp.class_counts)
    result: Any = None
    pruned = False
    tracked: set[str] = set()  # weights held at zero by the zero mask
    for i, st in enumerate(stages):
        extra: dict[str, Any] = {}
        masks = carry = None
        kernel_pruned: set[str] = set()
        if i == 0:
            model = exp.create(st.arch, st.classes, st.width)
        else:
            ratio = opt.prune[i - 1]
            before = result.model
            if ratio > 0 and opt.prune_mode == "kernel":
                from netgrow.ops.kernel_prune import prune_kernels

                before, kmasks = prune_kernels(before, ratio)
                extra["pruned_kernels"] = int(sum(int(m.sum()) for m in kmasks.values()))
                kernel_pruned, ratio = set(kmasks), 0.0
            chain = expand(exp, before, stages[i - 1], st, i, ratio, pruned)
            pruned = pruned or ratio > 0
            model = chain.result()
            kernel_pruned = g.carried_names(chain.map, kernel_pruned) if kernel_pruned else set()
            extra["growth_ops"] = chain.ops
            if opt.zero_mask:
                tracked = g.carried_names(chain.map, tracked) | g.inserted_weights(model, chain.map)
            if opt.carry_optimizer or exp.trainer.config.cross_stage:
                carry = (result.model, result.optimizer_state)
        if tracked or kernel_pruned:  # zero-mask weights for good, kernel-pruned ones through this stage
            surround = opt.zero_mask_mode == "surround"
            masks = g.zero_masks(model, tracked, surround_only=surround)
            masks.update(g.zero_masks(model, kernel_pruned - tracked))
            extra["masked_params"] = sorted(masks)
            extra["masked_entries"] = int(sum(int(m.sum()) for m in masks.values()))
        role = "whole" if len(stages) == 1 else "first" if i == 0 else "last" if i == len(stages) - 1 else "middle"
        result = exp.run_stage(i, st, model, carry_from=carry, masks=masks, extra=extra, schedule_role=role)
        if masks:
            x = exp.example_for(result.model)
            # Table 2 counts the parameters a zero-skipping deployment keeps
            exp.records[-1].extra["params_nonzero"] = int(result.params) - extra["masked_entries"]
            exp.records[-1].extra["macs_per_sample_dense"] = int(count_macs(result.model, x))
            exp.records[-1].extra["macs_per_sample_masked"] = int(count_macs(result.model, x, masks=masks))


STRATEGY = Strategy(name="cumulative", parse=parse, plan=plan, run=run, first_models=first_models,
                    section="cumulative", section_required=True)

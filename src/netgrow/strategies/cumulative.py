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
from typing import TYPE_CHECKING, Any

from netgrow.strategies import growth as g
from netgrow.strategies.base import Growth, Stage
from netgrow.strategies.scratch import stopping_rule

if TYPE_CHECKING:
    from netgrow.cli.config import ExperimentConfig
    from netgrow.strategies.base import Experiment

log = logging.getLogger(__name__)


def plan(cfg: "ExperimentConfig", class_counts: list[int]) -> list[Stage]:
    """One stage per entry of the class schedule, with the planned architecture and width."""
    opt = cfg.options
    lr = float(cfg.train.get("lr", 0.05))
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
            if ratio > 0 and getattr(opt, "prune_mode", "filter") == "kernel":
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
            surround = getattr(opt, "zero_mask_mode", "all") == "surround"
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

"""Incremental training (Istrate, Malossi, Bekas & Nikolopoulos, section 3; Figs. 1-4).

The target network (a VGG or CIFAR ResNet of ``netgrow.models``) is partitioned a priori into K
sub-networks S_1..S_K -- by default consecutive layers of the same width (VGG16: the 64, 128, 256 and 512
channel convs; ResNet-20: stem + stage 1, stage 2, stage 3), or as the user lists them -- with the
classifier block (global average pool + linear layer) kept apart. Training starts with S_1 + classifier.
A phase ends when the angle criterion fires (``netgrow.strategies.angle``: every ``ws`` epochs a line is
fitted to the last ``ws`` validation accuracies; stop when ``alpha_i <= gamma * alpha_{i-1}``) or after
``max_epochs``; then S_{k+1} is inserted between S_k and the classifier and initialised by

- ``lookahead``: S_{k+1}, freshly initialised, is trained alone for ``lookahead_epochs`` on the features of
  the frozen S_1..S_k (their parameters bitwise unchanged, their BatchNorms in eval mode), together with the
  classifier, which is new whenever the width it reads changes;
- ``random``: S_{k+1} and the classifier as initialised, no look-ahead (the paper's comparison).

Realisation (decided here, documented in docs/cli.md): the growing network is an :class:`IncrementalNet`
holding the target's own layers (copied, same initialisation) in a ``ModuleList`` of sub-networks plus the
classifier block; with all K sub-networks it computes exactly the target architecture. Net2Net identity
insertion (``models.grow``) is not used: the paper's sub-networks change the width the classifier reads,
which no function-preserving op can bridge. Stage checkpoints load with
``netgrow.load(path, base=IncrementalNet...)``; every look-ahead and phase is one Trainer stage, so M counts
all of them.

Optional early stop of growth (``min_gain``): when a phase gains less than ``min_gain`` percentage points of
test accuracy per million added parameters over the previous phase, no further sub-network is added. The
summary's ``extra.accuracy_vs_params`` holds (parameters, accuracy) after every phase (the paper's Fig. 4).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from netgrow.errors import NetgrowValueError
from netgrow.strategies.angle import AngleStopping
from netgrow.strategies.base import Stage, seeded

if TYPE_CHECKING:
    from netgrow.cli.config import ExperimentConfig
    from netgrow.strategies.base import Experiment

log = logging.getLogger(__name__)


class IncrementalNet(nn.Module):
    """Sub-networks ``blocks[0..k-1]`` followed by the classifier block (global average pool + Linear).

    ``frozen`` = number of leading sub-networks kept in eval mode even when the net trains (look-ahead:
    their BatchNorm statistics must not move while their weights are frozen).
    """

    def __init__(self, blocks: Sequence[nn.Module], pool: nn.Module, classifier: nn.Linear):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.pool = pool
        self.classifier = classifier
        self.frozen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.classifier(torch.flatten(self.pool(x), 1))

    def train(self, mode: bool = True) -> "IncrementalNet":
        super().train(mode)
        for block in list(self.blocks)[: self.frozen]:
            block.eval()
        return self


# ------------------------------------------------------------------------------------- partitioning


def chain_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The target's feature layers in forward order, as ``(name, module)`` units.

    VGG: every child of ``features``; ResNet: ``stem`` and every residual block of ``layer1..layer3``.
    """
    if isinstance(getattr(model, "features", None), nn.Sequential):
        return [(f"features.{i}", m) for i, m in enumerate(model.features)]
    if all(hasattr(model, n) for n in ("stem", "layer1", "layer2", "layer3")):
        units: list[tuple[str, nn.Module]] = [("stem", model.stem)]
        for s in ("layer1", "layer2", "layer3"):
            units += [(f"{s}.{i}", b) for i, b in enumerate(getattr(model, s))]
        return units
    raise NetgrowValueError(
        f"incremental training partitions netgrow's VGG and ResNet families; {type(model).__name__} has neither "
        "a `features` Sequential nor stem/layer1..layer3; use model.arch = vgg11..vgg19 or resnet20..resnet110"
    )


def _out_width(module: nn.Module) -> int | None:
    convs = [m for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    if not convs:
        return None
    last = convs[-1]
    # a residual block's last conv in modules() order may be its shortcut projection: same width
    return int(last.out_channels if not isinstance(last, nn.Linear) else last.out_features)


def partition(model: nn.Module, spec: str | Sequence[Sequence[str]] = "width") -> list[list[str]]:
    """Unit names of each sub-network S_1..S_K.

    ``"width"``: consecutive units whose convs have the same output width (parameter-free units such as
    pooling join the sub-network before them). Otherwise ``spec`` lists, per sub-network, unit names or
    prefixes (``"layer1"`` = every block of layer1); together they must cover every unit once, in order.
    """
    units = chain_units(model)
    names = [n for n, _ in units]
    if spec == "width":
        groups: list[list[str]] = []
        width: int | None = None
        for name, m in units:
            w = _out_width(m)
            if not groups or (w is not None and width is not None and w != width):
                groups.append([])
            if w is not None:
                width = w
            groups[-1].append(name)
        return groups
    groups = []
    pos = 0
    for gi, group in enumerate(spec):
        chosen: list[str] = []
        for item in group:
            match = [n for n in names if n == item or n.startswith(item + ".")]
            if not match:
                raise NetgrowValueError(f"incremental.partition: sub-network {gi + 1} names {item!r}, which is not a "
                                        f"layer of the target; allowed: {names}")
            chosen += match
        if chosen != names[pos:pos + len(chosen)]:
            raise NetgrowValueError(f"incremental.partition: sub-network {gi + 1} = {list(group)} is not the next run "
                                    f"of consecutive layers (expected it to start at {names[pos] if pos < len(names) else 'the end'!r}); "
                                    f"layers in order: {names}")
        pos += len(chosen)
        groups.append(chosen)
    if pos != len(names):
        raise NetgrowValueError(f"incremental.partition leaves layers {names[pos:]} out; every layer of the target "
                                "must belong to one sub-network")
    if any(all(_out_width(dict(units)[n]) is None for n in g) for g in groups):
        raise NetgrowValueError("incremental.partition: every sub-network needs a layer with trainable parameters "
                                "(pooling alone cannot be a sub-network)")
    return groups


def build_blocks(model: nn.Module, groups: list[list[str]]) -> list[nn.Sequential]:
    """Copies of the target's layers, one ``nn.Sequential`` per sub-network."""
    units = dict(chain_units(model))
    return [nn.Sequential(*[copy.deepcopy(units[n]) for n in g]) for g in groups]


def block_width(block: nn.Module) -> int:
    w = [_out_width(m) for m in block]
    return [x for x in w if x is not None][-1]


# ------------------------------------------------------------------------------------------ strategy


def plan(cfg: "ExperimentConfig", class_counts: list[int]) -> list[Stage]:
    """The phases (and look-ahead stages) if every sub-network is added.

    The number of sub-networks depends on the partition of the target model, so a plan needs it built;
    this builds a tiny copy to count.
    """
    from netgrow import models

    o = cfg.options
    k = class_counts[-1]
    target = models.create(cfg.model.arch, num_classes=k, width=cfg.model.width)
    groups = partition(target, o.partition)
    return _stages(cfg, k, len(groups), len(class_counts) - 1)


def _stages(cfg: "ExperimentConfig", classes: int, K: int, di: int) -> list[Stage]:  # noqa: N803
    o = cfg.options
    arch = cfg.model.arch
    out = []
    for k in range(1, K + 1):
        if k > 1 and o.init == "lookahead":
            out.append(Stage(name=f"lookahead-S{k}", classes=classes, arch=f"{arch}:S1-{k}", width=cfg.model.width,
                             epochs=o.lookahead_epochs, data_index=di,
                             info={"phase": "lookahead", "subnetworks": k, "K": K}))
        out.append(Stage(name=f"phase-S1-{k}", classes=classes, arch=f"{arch}:S1-{k}", width=cfg.model.width,
                         epochs=o.max_epochs, data_index=di, stopping=AngleStopping(ws=o.ws, gamma=o.gamma),
                         info={"phase": "train", "subnetworks": k, "K": K}))
    return out


def run(exp: "Experiment") -> None:
    """Grow the target sub-network by sub-network."""
    cfg, o = exp.cfg, exp.cfg.options
    k_cls = exp.class_counts[-1]
    di = len(exp.class_counts) - 1
    target = exp.create(cfg.model.arch, k_cls, cfg.model.width)
    groups = partition(target, o.partition)
    blocks = build_blocks(target, groups)
    K = len(blocks)  # noqa: N806
    stages = _stages(cfg, k_cls, K, di)
    exp.extra.update({"partition": groups, "K": K, "init": o.init, "accuracy_vs_params": []})
    net = IncrementalNet([blocks[0]], copy.deepcopy(target.pool), _classifier(exp, block_width(blocks[0]), k_cls, 1))
    index = 0
    prev: tuple[float, int] | None = None
    for st in stages:
        k = st.info["subnetworks"]
        if st.info["phase"] == "lookahead" or (o.init == "random" and k > 1 and len(net.blocks) < k):
            net = _add_block(exp, net, blocks[k - 1], k_cls, k)
        if st.info["phase"] == "lookahead":
            net.frozen = k - 1
            new = f"blocks.{k - 1}."
            exp.run_stage(index, st, net, trainable=lambda n, new=new: n.startswith(new) or n.startswith("classifier."))
            net.frozen = 0
            index += 1
            continue
        res = exp.run_stage(index, st, net)
        net = res.model
        index += 1
        val_acc = res.history[-1].get("val_acc") if res.history else None
        point = {"subnetworks": k, "params": int(res.params), "val_acc": val_acc, "test_acc": res.test_acc}
        exp.extra["accuracy_vs_params"].append(point)
        # the growth decision reads the validation split (the test set is only reported)
        if o.min_gain is not None and prev is not None and k < K and val_acc is not None:
            gain_pp = 100 * (val_acc - prev[0])
            added_m = (res.params - prev[1]) / 1e6
            if added_m > 0 and gain_pp / added_m < o.min_gain:
                exp.extra["stopped_growth"] = {"after_subnetworks": k, "gain_pp_per_mparam": gain_pp / added_m,
                                               "min_gain": o.min_gain}
                log.info("incremental: growth stopped after S1..S%d (%.3g pp per M params < %g)", k,
                         gain_pp / added_m, o.min_gain)
                break
        if val_acc is not None:
            prev = (val_acc, res.params)


def _classifier(exp: "Experiment", width: int, classes: int, k: int) -> nn.Linear:
    with seeded(exp.cfg.seed * 1000 + 100 + k):
        return nn.Linear(width, classes)


def _add_block(exp: "Experiment", net: IncrementalNet, block: nn.Module, classes: int, k: int) -> IncrementalNet:
    """S_1..S_{k-1} (trained) + a fresh copy of S_k + the classifier (kept if its input width is unchanged)."""
    device = next(net.parameters()).device
    new_block = copy.deepcopy(block).to(device)
    width = block_width(new_block)
    if width == net.classifier.in_features:
        classifier = copy.deepcopy(net.classifier)
    else:
        classifier = _classifier(exp, width, classes, k).to(device)
    grown = IncrementalNet([*copy.deepcopy(list(net.blocks)), new_block], copy.deepcopy(net.pool), classifier)
    return grown

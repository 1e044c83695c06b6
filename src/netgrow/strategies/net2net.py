"""Net2Net teacher -> student (Chen, Goodfellow & Shlens, section 3 and appendix A) and its baselines.

``baseline = "net2net"``: train the teacher, grow it function-preservingly into the student (Net2WiderNet
to the student width, Net2DeeperNet to the student depth), train the student with the teacher's learning
rate times ``lr_factor`` (the paper: about 1/10).
Noise (``noise``, default 0.01): Net2WiderNet's copies of a unit get Gaussian noise of ``noise`` times the
weight tensor's std on their incoming weights. Without it the copies receive identical gradients and stay
identical forever, so the student never uses its extra width (the paper adds noise for this reason).
``baseline = "random_pad"``: as above but the new units of the widening are random (Net2WiderNet's baseline).
``baseline = "random_init"``: the student architecture trained from random initialisation, one stage.
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
    """Teacher then student (or the student alone for ``random_init``)."""
    o = cfg.options
    k, lr = class_counts[-1], float(cfg.train.get("lr", 0.05))
    di = len(class_counts) - 1
    student = Stage(name=f"student-{o.student_arch}-w{o.student_width:g}", classes=k, arch=o.student_arch,
                    width=o.student_width, epochs=o.student_epochs, data_index=di,
                    lr=lr if o.baseline == "random_init" else lr * o.lr_factor, stopping=stopping_rule(cfg),
                    info={"role": "student", "baseline": o.baseline})
    if o.baseline == "random_init":
        return [student]
    teacher = Stage(name=f"teacher-{o.teacher_arch}-w{o.teacher_width:g}", classes=k, arch=o.teacher_arch,
                    width=o.teacher_width, epochs=o.teacher_epochs, data_index=di, lr=lr,
                    stopping=stopping_rule(cfg), info={"role": "teacher", "baseline": o.baseline})
    return [teacher, student]


def run(exp: "Experiment") -> None:
    """Train teacher and student (or the random-init student)."""
    o = exp.cfg.options
    stages = plan(exp.cfg, exp.class_counts)
    if o.baseline == "random_init":
        st = stages[0]
        exp.run_stage(0, st, exp.create(st.arch, st.classes, st.width))
        return
    teacher, student = stages
    res = exp.run_stage(0, teacher, exp.create(teacher.arch, teacher.classes, teacher.width))
    chain = Growth(res.model)
    method = "random_pad" if o.baseline == "random_pad" else "net2net"
    # widen first: the inserted identity layers then take the student width directly
    if student.width > teacher.width:
        g.grow_width(exp, chain, teacher.arch, teacher.width, student.width, classes=teacher.classes,
                     noise=o.noise, seed=exp.cfg.seed * 1000 + 1, method=method)
    if student.arch != teacher.arch:
        g.grow_depth(exp, chain, student.arch, student.data_index)
    model = chain.result()
    carry: Any = (res.model, res.optimizer_state) if o.carry_optimizer else None
    exp.run_stage(1, student, model, carry_from=carry, extra={"growth_ops": chain.ops})

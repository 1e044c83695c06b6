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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netgrow.errors import ConfigError
from netgrow.strategies import growth as g
from netgrow.strategies.base import Growth, Stage
from netgrow.strategies.experiment import check_growth, known_models, single_stage
from netgrow.strategies.registry import ParseContext, Strategy
from netgrow.strategies.schema import Section
from netgrow.strategies.scratch import stopping_rule

if TYPE_CHECKING:
    from netgrow.strategies.base import Experiment
    from netgrow.strategies.experiment import ExperimentConfig

log = logging.getLogger(__name__)

BASELINES = ("net2net", "random_pad", "random_init")


@dataclass(frozen=True)
class Net2NetConfig:
    """``[net2net]``: teacher -> student (wider and/or deeper), or one of the paper's baselines."""

    teacher_arch: str
    teacher_width: float
    student_arch: str
    student_width: float
    baseline: str = "net2net"  # net2net | random_pad | random_init
    lr_factor: float = 0.1  # student lr = teacher lr * lr_factor (Net2Net appendix A)
    noise: float = 0.01  # Net2WiderNet noise, a fraction of each weight tensor's std (breaks the copies' symmetry)
    teacher_epochs: int = 10
    student_epochs: int = 10
    carry_optimizer: bool = False


def parse(s: Section, ctx: ParseContext) -> Net2NetConfig:
    """Read ``[net2net]``: the student defaults to ``[model]``, the teacher to the student."""
    models = known_models()
    model = ctx.model
    student_arch = s.str_("student_arch", default=model.arch, choices=models)
    if student_arch is None:
        raise ConfigError(f"{s.source}: missing required key net2net.student_arch (or model.arch); "
                          f"allowed: {', '.join(models)}")
    student_width = s.float_("student_width", default=model.width, lo=0.0, hi=64.0, lo_open=True)
    teacher_arch = s.str_("teacher_arch", default=student_arch, choices=models)
    teacher_width = s.float_("teacher_width", default=student_width, lo=0.0, hi=64.0, lo_open=True)
    check_growth([teacher_arch, student_arch], [teacher_width, student_width], "net2net teacher/student",
                 s.source)
    if (teacher_arch, teacher_width) == (student_arch, student_width):
        raise ConfigError(f"{s.source}: net2net.student_arch/student_width = ({student_arch!r}, {student_width}) "
                          f"equal the teacher's; allowed: a wider (student_width > teacher_width) and/or deeper "
                          f"student")
    baseline = s.str_("baseline", default="net2net", choices=BASELINES)
    if baseline == "random_pad" and student_width == teacher_width:
        raise s.fail("baseline", baseline, "random_pad is the baseline of Net2WiderNet and needs "
                     "student_width > teacher_width", "net2net, random_init (or widen the student)")
    out = Net2NetConfig(
        teacher_arch=teacher_arch, teacher_width=teacher_width, student_arch=student_arch,
        student_width=student_width, baseline=baseline,
        lr_factor=s.float_("lr_factor", default=0.1, lo=0.0, lo_open=True),
        noise=s.float_("noise", default=0.01, lo=0.0),
        teacher_epochs=s.int_("teacher_epochs", default=ctx.epochs, lo=1),
        student_epochs=s.int_("student_epochs", default=ctx.epochs, lo=1),
        carry_optimizer=s.bool_("carry_optimizer", False),
    )
    s.done()
    single_stage(ctx.data, "net2net", ctx.source)
    return out


def first_models(cfg: "ExperimentConfig") -> list[tuple[str, str, float]]:
    o = cfg.options
    if o.baseline == "random_init":
        return [("net2net.student_arch", o.student_arch, o.student_width)]
    return [("net2net.teacher_arch", o.teacher_arch, o.teacher_width)]


def plan(cfg: "ExperimentConfig", class_counts: list[int]) -> list[Stage]:
    """Teacher then student (or the student alone for ``random_init``)."""
    o = cfg.options
    k, lr = class_counts[-1], float(cfg.train.lr)
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


STRATEGY = Strategy(name="net2net", parse=parse, plan=plan, run=run, first_models=first_models,
                    section="net2net", section_required=True)

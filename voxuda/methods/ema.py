"""Exponential-moving-average (EMA) teachers (Tarvainen and Valpola 2017).

The teacher is a frozen copy of the student whose weights follow ``t <- m t + (1 - m) s`` after each optimiser
step. Buffers (e.g. BatchNorm running statistics) are copied rather than averaged: they are statistics, not
weights, and averaging integer counters would be meaningless.

**Teacher momentum vs run length.** After ``n`` steps a teacher still holds ``m ** n`` of its starting
weights; its half-life is ``ln(0.5) / ln(m)`` steps (0.99: 69, 0.999: 693). voxuda's rule: the half-life must
be at most a fifth of ``trainer.steps`` ([I]: then ``m ** steps <= 0.5 ** 5 = 3 %``, so the evaluated teacher
is an average of the run's students, not of the warm start). The adaptation review measured what breaking it
costs: at 0.999 for 100 warm-started steps the Vox-UDA teacher kept 90 % of the source-only parent, moved
1.7 % (relative L2) and scored the parent's Dice. The run-config check warns (``voxuda.engine.run_config``);
``ema_half_life_fraction`` sets the momentum from the run length instead.
"""

from __future__ import annotations

import copy
import math

import attrs
import torch
from torch import nn


def make_ema_teacher(student: nn.Module) -> nn.Module:
    """A deep copy of ``student`` with gradients off, so optimisers never touch it."""
    teacher = copy.deepcopy(student)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place: every teacher parameter becomes ``momentum * teacher + (1 - momentum) * student``."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must lie in [0, 1], got {momentum}")
    teacher_params = dict(teacher.named_parameters())
    for name, s_param in student.named_parameters():
        t_param = teacher_params[name]
        t_param.mul_(momentum).add_(s_param.detach().to(t_param.dtype), alpha=1.0 - momentum)
    teacher_buffers = dict(teacher.named_buffers())
    for name, s_buffer in student.named_buffers():
        teacher_buffers[name].copy_(s_buffer)


def ramped_momentum(momentum: float, step: int) -> float:
    """``min(momentum, 1 - 1/(step + 2))``: early updates follow the student closely (Tarvainen's ramp)."""
    return min(momentum, 1.0 - 1.0 / (step + 2))


#: The teacher-momentum rule: an EMA teacher's half-life may be at most this fraction of the run's steps.
MAX_HALF_LIFE_FRACTION = 0.2


def half_life(momentum: float) -> float:
    """Steps after which a student change has half its weight in the teacher: ``ln(0.5) / ln(momentum)``.

    ``inf`` for momentum 1 (the teacher never moves), 0 for momentum 0 (the teacher is the student).
    """
    if momentum >= 1.0:
        return math.inf
    if momentum <= 0.0:
        return 0.0
    return math.log(0.5) / math.log(momentum)


def momentum_for_half_life(steps: float) -> float:
    """The momentum whose :func:`half_life` is ``steps``: ``0.5 ** (1 / steps)`` (0 for ``steps`` <= 0)."""
    return 0.0 if steps <= 0 else 0.5 ** (1.0 / steps)


def effective_momentum(momentum: float, half_life_fraction: float, total_steps: int) -> float:
    """The momentum a method uses: ``momentum`` as configured, or, with ``half_life_fraction`` > 0, the one
    whose half-life is that fraction of ``total_steps`` (so the teacher keeps pace with any run length)."""
    if half_life_fraction > 0:
        return momentum_for_half_life(half_life_fraction * max(int(total_steps), 1))
    return momentum


@attrs.frozen
class TeacherSchedule:
    """The teacher-momentum rule checked for one run (recorded in ``run.json``)."""

    momentum: float
    half_life: float
    steps: int
    max_half_life: float
    key: str = "method.ema_momentum"

    @property
    def holds(self) -> bool:
        return self.half_life <= self.max_half_life * (1 + 1e-9)  # round-off of ln(0.5) / ln(0.5 ** (1 / h))

    @property
    def suggested_momentum(self) -> float:
        """The largest momentum that satisfies the rule (rounded down to 4 decimals)."""
        return math.floor(momentum_for_half_life(self.max_half_life) * 1e4) / 1e4

    def warning(self) -> str | None:
        """One line naming the option, the half-life, the steps and a momentum that would satisfy the rule."""
        if self.holds:
            return None
        return (f"{self.key} = {self.momentum:g}: the teacher's half-life is {self.half_life:.0f} steps, "
                f"more than {MAX_HALF_LIFE_FRACTION:g} of trainer.steps = {self.steps}, so it stays close to "
                f"its start; use ema_momentum <= {self.suggested_momentum:g} or ema_half_life_fraction = "
                f"{MAX_HALF_LIFE_FRACTION:g} (docs/vox_uda.md, 'Teacher momentum')")

    def to_dict(self) -> dict[str, float | int | bool | None]:
        finite = self.half_life if math.isfinite(self.half_life) else None
        return {"momentum": self.momentum, "half_life": finite, "steps": self.steps,
                "max_half_life": self.max_half_life, "holds": self.holds}


def teacher_schedule(momentum: float, total_steps: int, half_life_fraction: float = 0.0) -> TeacherSchedule:
    """Check the rule ``half_life(m) <= MAX_HALF_LIFE_FRACTION * total_steps`` for a run's teacher."""
    used = effective_momentum(momentum, half_life_fraction, total_steps)
    return TeacherSchedule(momentum=used, half_life=half_life(used), steps=int(total_steps),
                           max_half_life=MAX_HALF_LIFE_FRACTION * int(total_steps))

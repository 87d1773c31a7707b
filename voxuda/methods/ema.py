"""Exponential-moving-average (EMA) teachers (Tarvainen and Valpola 2017).

The teacher is a frozen copy of the student whose weights follow ``t <- m t + (1 - m) s`` after each optimiser
step. Buffers (e.g. BatchNorm running statistics) are copied rather than averaged: they are statistics, not
weights, and averaging integer counters would be meaningless.
"""

from __future__ import annotations

import copy

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

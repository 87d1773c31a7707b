"""Gradient reversal (Ganin and Lempitsky 2015) and its usual weight schedule.

The layer is the identity going forward and multiplies the gradient by ``-lambda`` going back, so one backward
pass trains the discriminator to tell domains apart while pushing the feature extractor to make them alike.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, lambd: float) -> Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        return -ctx.lambd * grad_output, None


def grad_reverse(x: Tensor, lambd: float = 1.0) -> Tensor:
    """Identity forward; gradient multiplied by ``-lambd`` backward."""
    return _GradReverse.apply(x, float(lambd))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; set ``lambd`` each step from :func:`dann_lambda`."""

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = float(lambd)

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.lambd)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"


def dann_lambda(progress: float, max_weight: float = 1.0, gamma: float = 10.0) -> float:
    """``max_weight * (2 / (1 + exp(-gamma p)) - 1)`` for training progress ``p`` in [0, 1].

    Starts at 0 so that the noisy early discriminator does not wreck the features, and saturates at
    ``max_weight``.
    """
    p = min(max(float(progress), 0.0), 1.0)
    return max_weight * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


def adversarial_weight(
    step: int,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    max_weight: float = 1.0,
    gamma: float = 10.0,
    schedule: Literal["dann", "constant"] = "dann",
) -> float:
    """Gradient-reversal weight at optimiser step ``step`` of ``total_steps``.

    0 during the first ``warmup_steps`` (the discriminator learns alone); then ``max_weight`` under
    ``constant``, or the :func:`dann_lambda` ramp whose progress restarts at the end of the warm-up, so a
    warm-up does not eat the ramp.
    """
    if step < warmup_steps:
        return 0.0
    if schedule == "constant":
        return float(max_weight)
    span = max(total_steps - warmup_steps, 1)
    return dann_lambda((step - warmup_steps) / span, max_weight, gamma)

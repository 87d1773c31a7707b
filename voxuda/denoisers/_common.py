"""Shared checks for denoiser inputs and attrs validators for their configs."""

from __future__ import annotations

import math
from typing import Any

import torch


def check_batch(x: Any, who: str) -> torch.Tensor:
    """Denoisers take (N, C, D, H, W) float tensors; anything else is a ValueError naming the input."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{who}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 5:
        raise ValueError(f"{who}: x must have shape (N, C, D, H, W), got {tuple(x.shape)}")
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"{who}: x must be a floating tensor, got {x.dtype}")
    return x


def positive(_inst: Any, attribute: Any, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def non_negative_int(_inst: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")

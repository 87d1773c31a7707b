"""The input check every denoiser runs on its batch (config validators live in :mod:`voxuda.checks`)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_batch"]


def check_batch(x: Any, who: str) -> torch.Tensor:
    """Denoisers take (N, C, D, H, W) float tensors; anything else is a ValueError naming the input."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{who}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 5:
        raise ValueError(f"{who}: x must have shape (N, C, D, H, W), got {tuple(x.shape)}")
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"{who}: x must be a floating tensor, got {x.dtype}")
    return x

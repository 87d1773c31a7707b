"""Pieces shared by the backbones: norm-layer choice and the logits-only wrapper used for evaluation."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

NormKind = Literal["group", "instance", "batch"]


def group_count(channels: int, max_groups: int = 8) -> int:
    """The largest divisor of ``channels`` not above ``max_groups`` (so GroupNorm works at any width)."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def make_norm(kind: NormKind, channels: int) -> nn.Module:
    """A 3D norm layer. GroupNorm is the default because it does not depend on the batch size (1-4 here)."""
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    raise ValueError(f"unknown norm {kind!r}; use 'group', 'instance' or 'batch'")


class LogitsOnly(nn.Module):
    """Wrap a backbone returning ``(logits, features)`` so that it returns the logits only (a predictor)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        logits, _ = self.backbone(x)
        return logits


def check_input(x: Tensor, in_channels: int, divisor: int, name: str) -> None:
    """Fail with a readable message on the two common mistakes: wrong rank/channels and indivisible sizes."""
    if x.ndim != 5 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects (N, {in_channels}, D, H, W) input, got shape {tuple(x.shape)}")
    bad = [s for s in x.shape[2:] if s % divisor]
    if bad:
        raise ValueError(f"{name}: spatial sizes {tuple(x.shape[2:])} must be multiples of {divisor}")

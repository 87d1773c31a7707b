"""Batched 3-D augmentations for self-training methods (mean teacher, Vox-UDA).

All functions take ``(N, C, D, H, W)`` volumes and an explicit :class:`torch.Generator`, so a run is
reproducible and the same geometric transform can be replayed on labels or on a teacher's input.
Each sample gets its own transform. Default rotations are only in the (y, x) plane: rotating into the
beam axis (z) would move the missing wedge, which is a physical property of the data, not a nuisance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["GeometricParams", "sample_geometric", "apply_geometric", "random_flip_rot90", "intensity_jitter"]

# Spatial dims of a (N, C, D, H, W) tensor: z=2, y=3, x=4.
_DEFAULT_PLANES: tuple[tuple[int, int], ...] = ((3, 4),)


@dataclass(frozen=True)
class GeometricParams:
    """Per-sample flips (N, 3) bool over (z, y, x) and quarter turns (N, P) per rotation plane."""

    flips: torch.Tensor
    turns: torch.Tensor
    planes: tuple[tuple[int, int], ...]


def sample_geometric(
    n: int, generator: torch.Generator, planes: tuple[tuple[int, int], ...] = _DEFAULT_PLANES
) -> GeometricParams:
    """Draw flips and 90° rotations for ``n`` samples."""
    flips = torch.randint(0, 2, (n, 3), generator=generator).bool()
    turns = torch.randint(0, 4, (n, len(planes)), generator=generator)
    return GeometricParams(flips, turns, planes)


def _apply_one(
    x: torch.Tensor, flips: torch.Tensor, turns: torch.Tensor, planes: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    # x has a leading singleton batch dim; spatial dims at -3, -2, -1.
    dims = [d for d, f in zip((-3, -2, -1), flips.tolist(), strict=True) if f]
    if dims:
        x = torch.flip(x, dims)
    for (a, b), k in zip(planes, turns.tolist(), strict=True):
        if k:
            x = torch.rot90(x, k, (a - 5, b - 5))
    return x


def apply_geometric(x: torch.Tensor, params: GeometricParams) -> torch.Tensor:
    """Apply drawn flips/rotations to ``(N, C, D, H, W)`` volumes or ``(N, D, H, W)`` labels."""
    squeeze = x.ndim == 4
    y = x.unsqueeze(1) if squeeze else x
    out = torch.stack(
        [
            _apply_one(y[i : i + 1], params.flips[i], params.turns[i], params.planes)[0]
            for i in range(y.shape[0])
        ]
    )
    return out.squeeze(1) if squeeze else out


def random_flip_rot90(
    volume: torch.Tensor,
    label: torch.Tensor | None,
    generator: torch.Generator,
    planes: tuple[tuple[int, int], ...] = _DEFAULT_PLANES,
) -> tuple[torch.Tensor, torch.Tensor | None, GeometricParams]:
    """Random flips and 90° rotations; the same transform is applied to ``label`` (if given).

    Non-cubic volumes are only rotated in planes whose two sizes are equal.
    """
    if volume.ndim != 5:
        raise ValueError(f"expected (N, C, D, H, W), got shape {tuple(volume.shape)}")
    usable = tuple(p for p in planes if volume.shape[p[0]] == volume.shape[p[1]])
    params = sample_geometric(volume.shape[0], generator, usable)
    out_l = apply_geometric(label, params) if label is not None else None
    return apply_geometric(volume, params), out_l, params


def intensity_jitter(
    volume: torch.Tensor,
    generator: torch.Generator,
    scale: float = 0.1,
    shift: float = 0.1,
    noise: float = 0.0,
) -> torch.Tensor:
    """Per-sample gain ``1 + U(-scale, scale)``, offset ``U(-shift, shift)`` and optional white noise."""
    n = volume.shape[0]
    shape = (n,) + (1,) * (volume.ndim - 1)
    gain = 1 + (torch.rand(shape, generator=generator) * 2 - 1) * scale
    off = (torch.rand(shape, generator=generator) * 2 - 1) * shift
    out = volume * gain.to(volume) + off.to(volume)
    if noise > 0:
        out = out + noise * torch.randn(volume.shape, generator=generator).to(volume)
    return out

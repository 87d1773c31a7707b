"""Guides for the improved bilateral filter: which vector the range kernel compares between voxels.

The IBF of Vox-UDA compares 3D gradients of the Laplacian instead of intensities, so that weights follow
structure (edges, curvature) rather than noisy grey values.  The paper's wording ("Sobel operator as the
Laplacian operator") is ambiguous, so both readings are offered.  All stencils use replicate borders and
are unnormalised (no 1/2 on central differences, integer Sobel taps), as the paper notes write them; this
matters because sigma_r is absolute.

Multi-channel inputs get one 3-vector per channel: G = 3 * C, ordered (c0: d/dz, d/dy, d/dx, c1: ...).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from voxuda.ops._validate import as_tensor, check_float_finite, restore, to_5d

GUIDES = ("laplacian_gradient", "sobel_gradient", "intensity")
# How far (in voxels) each guide looks: chunked filtering needs halo = radius + reach.
GUIDE_REACH = {"laplacian_gradient": 2, "sobel_gradient": 1, "intensity": 0}


def _shifted(p: torch.Tensor, axis: int, step: int) -> torch.Tensor:
    """View of a 1-voxel-padded (N, C, D+2, H+2, W+2) tensor shifted by ``step`` along spatial ``axis``."""
    idx = [slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1)]
    idx[2 + axis] = slice(1 + step, p.shape[2 + axis] - 1 + step)
    return p[tuple(idx)]


def _central_differences(v: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) -> (N, 3C, ...): v(a+1) - v(a-1) along z, y, x with replicate border."""
    p = F.pad(v, (1, 1, 1, 1, 1, 1), mode="replicate")
    grads = [_shifted(p, a, 1) - _shifted(p, a, -1) for a in range(3)]
    n, c = v.shape[:2]
    return torch.stack(grads, dim=2).reshape(n, 3 * c, *v.shape[2:])


def laplacian(x5: torch.Tensor) -> torch.Tensor:
    """6-neighbour Laplacian: sum of the face neighbours minus 6 v, replicate border."""
    p = F.pad(x5, (1, 1, 1, 1, 1, 1), mode="replicate")
    out = -6.0 * x5
    for a in range(3):
        out = out + _shifted(p, a, 1) + _shifted(p, a, -1)
    return out


def _laplacian_gradient5(x5: torch.Tensor) -> torch.Tensor:
    return _central_differences(laplacian(x5))


def _sobel_gradient5(x5: torch.Tensor) -> torch.Tensor:
    """3D Sobel: derivative [-1, 0, 1] along one axis, smoothing [1, 2, 1] along the other two."""
    p = F.pad(x5, (1, 1, 1, 1, 1, 1), mode="replicate")

    def smooth(t: torch.Tensor, axis: int) -> torch.Tensor:
        n = t.shape[2 + axis]
        idx = [slice(None)] * 5
        parts = []
        for k, wgt in ((0, 1.0), (1, 2.0), (2, 1.0)):
            idx[2 + axis] = slice(k, n - 2 + k)
            parts.append(wgt * t[tuple(idx)])
        return parts[0] + parts[1] + parts[2]

    def deriv(t: torch.Tensor, axis: int) -> torch.Tensor:
        n = t.shape[2 + axis]
        idx = [slice(None)] * 5
        idx[2 + axis] = slice(2, n)
        hi = t[tuple(idx)]
        idx[2 + axis] = slice(0, n - 2)
        return hi - t[tuple(idx)]

    grads = []
    for a in range(3):
        t = p
        for b in range(3):
            t = deriv(t, b) if b == a else smooth(t, b)
        grads.append(t)  # each 3-tap op consumed the 1-voxel pad on its own axis
    n, c = x5.shape[:2]
    return torch.stack(grads, dim=2).reshape(n, 3 * c, *x5.shape[2:])


def compute_guide5(x5: torch.Tensor, guide: str) -> torch.Tensor:
    """Guide for a validated (N, C, D, H, W) tensor by name (see :data:`GUIDES`)."""
    if guide == "laplacian_gradient":
        return _laplacian_gradient5(x5)
    if guide == "sobel_gradient":
        return _sobel_gradient5(x5)
    if guide == "intensity":
        return x5
    raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}")


def _public(x: Any, fn: Any, name: str) -> Any:
    t, was_numpy = as_tensor(x, name)
    t5, rank = to_5d(t, name)
    check_float_finite(t5, name)
    with torch.no_grad():
        g = fn(t5)
    if rank == 3:
        return g[0].numpy() if was_numpy else g[0]  # (3, D, H, W)
    return restore(g, 5, was_numpy)


def laplacian_gradient_guide(x: Any) -> Any:
    """Gradient (central differences) of the 6-neighbour Laplacian, replicate borders.

    (N, C, D, H, W) -> (N, 3C, D, H, W); a 3D (D, H, W) input gives (3, D, H, W).  numpy in, numpy out.
    """
    return _public(x, _laplacian_gradient5, "x")


def sobel_gradient_guide(x: Any) -> Any:
    """3D Sobel first derivative along z, y, x (unnormalised, replicate borders); shapes as above."""
    return _public(x, _sobel_gradient5, "x")

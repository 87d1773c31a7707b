"""Public joint / improved 3D bilateral filters (dispatching to a backend)."""

from __future__ import annotations

from typing import Any

import torch

from voxuda.ops._validate import as_tensor, check_float_finite, check_guide, make_params, restore, to_5d
from voxuda.ops.backends import BackendChoice, resolve_backend
from voxuda.ops.backends.base import FilterParams
from voxuda.ops.guides import GUIDES, compute_guide5


def _run(
    x5: torch.Tensor, g5: torch.Tensor, params: FilterParams, backend: str | BackendChoice
) -> torch.Tensor:
    """Filter on the requested backend: a :class:`BackendChoice` remembers its resolution (denoisers, chunked
    filters), a plain name is resolved per call from the cached backend table."""
    x5 = x5.contiguous()
    if isinstance(backend, BackendChoice):
        chosen = backend.backend_for(x5, g5, params)
    else:
        chosen = resolve_backend(backend, x5, g5, params).backend
    return chosen.bilateral3d(x5, g5, params)


def bilateral3d(
    x: Any,
    *,
    radius: int,
    sigma_spatial: float,
    sigma_range: float,
    guide: Any = None,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    backend: str | BackendChoice = "auto",
) -> Any:
    """Joint (cross) 3D bilateral filter with replicate borders.

    out_p = sum_q Gs(|p - q|) Gr(|g_p - g_q|) x_q / sum_q Gs(|p - q|) Gr(|g_p - g_q|), q in the
    (2 radius + 1)^3 window, G_s(t) = exp(-t^2 / (2 s^2)).

    Args:
        x: (N, C, D, H, W) or (D, H, W), float32/float64, torch tensor or numpy array (same type returned).
        radius: half-width of the cubic window in voxels (0 returns a copy).
        sigma_spatial: spatial sigma, in the units of ``spacing`` (voxels for the default spacing).
        sigma_range: range sigma, in guide units (intensity units for the classic filter).
        guide: (N, G, D, H, W) guide compared by Euclidean distance over its G channels (for a 3D x also
            (D, H, W) or (G, D, H, W)); None uses x itself, i.e. the classic filter, where each channel
            of x is then filtered with weights from all of x's channels.
        spacing: voxel size along (z, y, x) = (D, H, W); spatial distances are offsets times spacing.
        backend: "auto" (highest registered priority that is available and supports the inputs), a
            name, or a :class:`~voxuda.ops.backends.BackendChoice`, which resolves once per kind of input
            and tells afterwards which backend ran (``choice.name``).
    """
    t, was_numpy = as_tensor(x, "x")
    x5, rank = to_5d(t, "x")
    check_float_finite(x5, "x")
    params = make_params(radius, sigma_spatial, sigma_range, spacing)
    if guide is None:
        g5 = x5.contiguous()
    else:
        gt, _ = as_tensor(guide, "guide")
        g5 = check_guide(gt, x5, rank)
    return restore(_run(x5, g5, params, backend), rank, was_numpy)


def improved_bilateral3d(
    x: Any,
    *,
    radius: int = 1,
    sigma_spatial: float = 120.0,
    sigma_range: float = 1.2,
    guide: str = "laplacian_gradient",
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    backend: str | BackendChoice = "auto",
) -> Any:
    """Vox-UDA's improved bilateral filter (IBF): intensities averaged, structure vectors compared.

    The guide is computed from x: "laplacian_gradient" (central-difference gradient of the 6-neighbour
    Laplacian, the default), "sobel_gradient" (3D Sobel first derivative) or "intensity" (the classic
    filter).  Defaults are the paper's: 3^3 window (radius 1), sigma_d = 120, sigma_r = 1.2, meant for
    z-scored volumes (sigma_r is absolute, in guide units).

    ``sigma_spatial`` is in voxel units times ``spacing`` (plain voxels for the default spacing).  At 120
    the spatial kernel is effectively flat in a 3^3 window: the corner tap weighs exp(-3 / (2 * 120^2))
    = 0.99990, so only the range kernel shapes the weights.

    Shapes, types and ``backend`` as in :func:`bilateral3d`.
    """
    if guide not in GUIDES:
        raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}")
    t, was_numpy = as_tensor(x, "x")
    x5, rank = to_5d(t, "x")
    check_float_finite(x5, "x")
    params = make_params(radius, sigma_spatial, sigma_range, spacing)
    with torch.no_grad():
        g5 = compute_guide5(x5, guide).contiguous()
    return restore(_run(x5, g5, params, backend), rank, was_numpy)

"""Frequency-grid helpers shared by the NGM and the spectrally shaped noise models.

Conventions (written down once, because the paper does not give them):

- Frequencies are the integer indices ``m`` of ``torch.fft.fftfreq(n) * n``, i.e. ``m`` in ``[-n/2, n/2)``.
- The **filter rate** rho is the fraction of the spectrum inside the zeroed low-frequency box. The paper's
  ablated rates 8.4/17.8/24.4/42.2 % equal ``(k/32)^3`` for k = 14/18/20/24 (docs/sources.md, [I, strong]),
  so a rate maps to a box side ``k_a = round(rho^(1/3) * n_a)`` on each axis of any grid.
- The box of even side k covers ``m`` in ``[-k/2, k/2)`` (what a centred cube after ``fftshift`` covers).
  That set is not symmetric (``-k/2`` is in, ``+k/2`` is out), so the mask applied is its Hermitian
  symmetrisation ``(M(f) + M(-f)) / 2``; this is exactly what taking the real part of the inverse FFT of
  the asymmetric mask gives, and it keeps the filtered noise real.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from voxuda.noise.base import gaussian_like


def side_for_rate(rate: float, n: int) -> int:
    """Box side on an axis of length ``n`` whose cube holds the fraction ``rate`` of a cubic spectrum."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"filter rate must be a fraction in [0, 1) (0.244 for 24.4 %), got {rate}")
    return max(0, min(n, round(rate ** (1.0 / 3.0) * n)))


def rate_for_side(side: int, n: int) -> float:
    """The filter rate of a centred cube of side ``side`` on an ``n^3`` grid: ``(side / n)^3``."""
    return (min(side, n) / n) ** 3


def frequency_indices(shape: Sequence[int], device: torch.device | None = None) -> list[Tensor]:
    """Integer frequency indices per axis, broadcastable to ``shape``."""
    out = []
    for axis, n in enumerate(shape):
        m = torch.fft.fftfreq(n, d=1.0 / n, device=device).round()
        view = [1] * len(shape)
        view[axis] = n
        out.append(m.view(view))
    return out


def highpass_mask(shape: Sequence[int], sides: Sequence[int], device: torch.device | None = None) -> Tensor:
    """Real, Hermitian-symmetric high-pass mask that zeroes a centred low-frequency box of ``sides``.

    Values are 1 (passed), 0 (zeroed) or 1/2 on the box faces where the box is asymmetric (see module doc).
    """
    inside = torch.ones(tuple(shape), dtype=torch.bool, device=device)
    inside_flipped = torch.ones(tuple(shape), dtype=torch.bool, device=device)
    for m, k, n in zip(frequency_indices(shape, device), sides, shape):
        lo, hi = -(k // 2), k - k // 2  # [lo, hi): k indices
        inside = inside & (m >= lo) & (m < hi)
        # the same box seen at -f; index -n/2 maps to itself on an even grid
        neg = -m
        if n % 2 == 0:
            neg = torch.where(m == -(n // 2), m, neg)
        inside_flipped = inside_flipped & (neg >= lo) & (neg < hi)
    low = (inside.float() + inside_flipped.float()) / 2
    return 1.0 - low


def highpass(volumes: Tensor, sides: Sequence[int]) -> tuple[Tensor, Tensor]:
    """High-pass ``volumes (..., D, H, W)`` by zeroing the low-frequency box; returns (filtered, mask)."""
    shape = volumes.shape[-3:]
    mask = highpass_mask(shape, sides, device=volumes.device)
    spectrum = torch.fft.fftn(volumes.float(), dim=(-3, -2, -1))
    filtered = torch.fft.ifftn(spectrum * mask, dim=(-3, -2, -1)).real
    return filtered, mask


def radial_frequency(shape: Sequence[int], device: torch.device | None = None) -> Tensor:
    """Radius of every frequency in cycles per voxel (0 at DC, about 0.5 at the Nyquist face)."""
    r2 = torch.zeros(tuple(shape), device=device)
    for m, n in zip(frequency_indices(shape, device), shape):
        r2 = r2 + (m / n) ** 2
    return torch.sqrt(r2)


def radial_power(volumes: Tensor, n_shells: int | None = None) -> tuple[Tensor, Tensor]:
    """Mean power spectrum per radial shell, averaged over the leading dimensions of ``volumes``.

    Power is ``|FFT(x)|^2 / n_voxels``, so white noise of variance s^2 has power s^2 in every shell and
    the mean of the power over all frequencies equals the mean squared value (Parseval).
    Shells are ``1 / max(D, H, W)`` cycles per voxel wide. Returns (mean radius of each shell's frequencies
    in cycles/voxel, power). The mean radius, not the nominal centre, is returned because the shells in the
    corners of the cube hold few, unevenly spread frequencies; interpolating at the centres biased the
    synthesised spectrum there by up to 15 % for a ramp-shaped spectrum.
    """
    shape = volumes.shape[-3:]
    n_vox = math.prod(shape)
    flat = volumes.float().reshape(-1, *shape)
    power = (torch.fft.fftn(flat, dim=(-3, -2, -1)).abs() ** 2 / n_vox).mean(dim=0)
    width = 1.0 / max(shape)
    radius = radial_frequency(shape, volumes.device)
    index = torch.round(radius / width).long()
    count = int(index.max().item()) + 1 if n_shells is None else n_shells
    index = index.clamp(max=count - 1)
    sums = torch.zeros(count, device=volumes.device).index_add_(0, index.flatten(), power.flatten())
    counts = torch.zeros(count, device=volumes.device).index_add_(0, index.flatten(),
                                                                   torch.ones_like(power.flatten()))
    radius_sums = torch.zeros(count, device=volumes.device).index_add_(0, index.flatten(), radius.flatten())
    centres = torch.arange(count, device=volumes.device, dtype=torch.float32) * width
    mean_radius = torch.where(counts > 0, radius_sums / counts.clamp(min=1), centres)
    return mean_radius, sums / counts.clamp(min=1)


def power_on_grid(radii: Tensor, power: Tensor, shape: Sequence[int]) -> Tensor:
    """A radial power spectrum (``power`` per shell at mean radius ``radii``, cycles/voxel, as from
    :func:`radial_power`) on the frequency grid of ``shape``: linear interpolation in the radius, negative
    values clamped to 0; float32, on the CPU."""
    r = radial_frequency(shape).flatten().numpy()
    grid = np.interp(r, radii.numpy(), power.numpy()).astype(np.float32)
    return torch.from_numpy(grid).clamp(min=0).reshape(tuple(shape)).float()


def shaped_noise(shape: Sequence[int], amplitude: Tensor, generator: torch.Generator | None,
                 like: Tensor) -> Tensor:
    """Gaussian noise of ``shape`` (N, C, D, H, W) whose spectrum is white noise's times ``amplitude`` (a
    grid of the last three axes), drawn from ``generator``, on ``like``'s device and in its dtype."""
    white = gaussian_like(torch.empty(tuple(shape), device=like.device), generator)
    dims = (-3, -2, -1)
    return torch.fft.ifftn(torch.fft.fftn(white, dim=dims) * amplitude, dim=dims).real.to(like.dtype)

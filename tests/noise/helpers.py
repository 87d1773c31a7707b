"""Synthetic volumes with known noise, built in Fourier space so that they are exactly periodic.

Periodicity matters: a non-periodic smooth volume has edge discontinuities whose power leaks into the
high frequencies and would bias any high-pass noise estimate for reasons unrelated to the estimator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from voxuda.noise.fourier import radial_frequency


def smooth_volumes(n: int, size: int, generator: torch.Generator, cutoff: float = 0.06) -> Tensor:
    """Unit-variance smooth volumes: white noise low-passed by a Gaussian of ``cutoff`` cycles/voxel."""
    white = torch.randn(n, 1, size, size, size, generator=generator)
    r = radial_frequency((size, size, size))
    filt = torch.exp(-(r**2) / (2 * cutoff**2))
    x = torch.fft.ifftn(torch.fft.fftn(white, dim=(-3, -2, -1)) * filt, dim=(-3, -2, -1)).real
    return x / x.std(dim=(-3, -2, -1), keepdim=True)


def coloured_noise(n: int, size: int, generator: torch.Generator, power: Tensor) -> Tensor:
    """Gaussian noise whose power spectrum is ``power`` (a tensor on the (size,)*3 frequency grid)."""
    white = torch.randn(n, 1, size, size, size, generator=generator)
    return torch.fft.ifftn(torch.fft.fftn(white, dim=(-3, -2, -1)) * power.sqrt(), dim=(-3, -2, -1)).real

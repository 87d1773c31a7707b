"""Photometric and occlusion augmentations of 3D volumes ``(N, C, D, H, W)``: FixMatch's "strong" part.

They change intensities, never geometry, so labels stay valid voxel for voxel; cutout is the exception that
erases content, and returns a mask so that the erased voxels can be left out of a loss (a particle that
is no longer in the input cannot be segmented).

Every random draw comes from a CPU ``torch.Generator``, so a seed gives the same views on CPU and GPU.
Amplitudes are relative to each volume's standard deviation, because subtomograms from different
tomograms have different intensity scales.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def gaussian_kernel1d(sigma: float) -> Tensor:
    """Normalised 1D Gaussian of radius ``ceil(3 sigma)`` (a single 1 for ``sigma <= 0``)."""
    if sigma <= 0:
        return torch.ones(1)
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur3d(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(N, C, D, H, W)`` with replicate padding; identity for ``sigma <= 0``."""
    kernel = gaussian_kernel1d(sigma).to(device=x.device, dtype=x.dtype)
    if kernel.numel() == 1:
        return x
    n, c = x.shape[:2]
    radius = kernel.numel() // 2
    out = x.reshape(n * c, 1, *x.shape[2:])
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius  # F.pad lists the last axis first
        out = F.conv3d(F.pad(out, pad, mode="replicate"), kernel.reshape(shape))
    return out.reshape(x.shape)


@attrs.frozen
class StrongPhotometric:
    """Intensity jitter, Gaussian noise, blur and 3D cutout, each with its own strength (0 disables)."""

    intensity_scale: float = 0.2
    intensity_shift: float = 0.2
    noise_std: float = 0.3
    blur_sigma: float = 1.0
    blur_prob: float = 0.5
    cutout_fraction: float = 0.4
    cutout_prob: float = 0.5

    def __call__(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Augment each volume of a batch independently; returns ``(augmented, keep)``.

        ``keep`` is ``(N, D, H, W)`` bool, False on the voxels cutout erased.
        """
        keep = torch.ones((x.shape[0], *x.shape[2:]), dtype=torch.bool, device=x.device)
        out = []
        for i in range(x.shape[0]):
            volume, keep[i] = self._one(x[i : i + 1], generator)
            out.append(volume)
        return torch.cat(out), keep

    def _one(self, v: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        std = float(v.detach().float().std()) or 1.0
        mean = float(v.detach().float().mean())
        v = v * _uniform(g, 1.0 - self.intensity_scale, 1.0 + self.intensity_scale)
        v = v + std * _uniform(g, -self.intensity_shift, self.intensity_shift)
        if self.noise_std > 0:
            sigma = std * _uniform(g, 0.0, self.noise_std)
            v = v + sigma * torch.randn(v.shape, generator=g).to(device=v.device, dtype=v.dtype)
        if self.blur_sigma > 0 and float(torch.rand((), generator=g)) < self.blur_prob:
            v = gaussian_blur3d(v, _uniform(g, 0.25 * self.blur_sigma, self.blur_sigma))
        keep = torch.ones(v.shape[2:], dtype=torch.bool, device=v.device)
        if self.cutout_fraction > 0 and float(torch.rand((), generator=g)) < self.cutout_prob:
            box = []
            for size in v.shape[2:]:
                side = max(1, round(size * _uniform(g, 0.5 * self.cutout_fraction, self.cutout_fraction)))
                start = int(torch.randint(0, size - side + 1, (1,), generator=g))
                box.append(slice(start, start + side))
            v = v.clone()
            v[(..., *box)] = mean
            keep[tuple(box)] = False
        return v, keep

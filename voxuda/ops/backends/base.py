"""What every bilateral backend implements, plus the filter parameters they share."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import attrs
import torch

LOG2E = 1.0 / math.log(2.0)


@attrs.frozen(kw_only=True)
class FilterParams:
    """Validated parameters of one joint bilateral filter call.

    ``spacing`` is (z, y, x) = (D, H, W) axis order; spatial distances are voxel offsets times spacing, in
    the same unit as ``sigma_spatial``.
    """

    radius: int
    sigma_spatial: float
    sigma_range: float
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def spatial_exponent(self, dz: int, dy: int, dx: int) -> float:
        """Natural-log exponent ``|o * spacing|^2 / (2 sigma_d^2)`` of the spatial Gaussian at offset o."""
        sz, sy, sx = self.spacing
        d2 = (dz * sz) ** 2 + (dy * sy) ** 2 + (dx * sx) ** 2
        return d2 / (2.0 * self.sigma_spatial**2)

    def exp2_coefficients(self) -> tuple[float, float, float, float]:
        """(cz, cy, cx, cr) such that the weight is ``exp2(-(cz dz^2 + cy dy^2 + cx dx^2 + cr |dg|^2))``.

        Folding log2(e) / (2 sigma^2) and the spacing in on the host leaves one exp2 and a few FMAs per tap
        in the kernel.
        """
        k = LOG2E / (2.0 * self.sigma_spatial**2)
        sz, sy, sx = self.spacing
        return k * sz * sz, k * sy * sy, k * sx * sx, LOG2E / (2.0 * self.sigma_range**2)


@runtime_checkable
class BilateralBackend(Protocol):
    """A joint 3D bilateral implementation on (N, C, D, H, W) tensors with an explicit guide.

    Its name, rank (``priority``) and availability (``probe``) are not part of the object: they are what
    it was registered with (``voxuda_register_ops``), so that the registry is the one place they live.
    """

    def supports(self, x: torch.Tensor, guide: torch.Tensor, params: FilterParams) -> tuple[bool, str]:
        """Whether this backend can filter these particular inputs (device, dtype, channel count)."""
        ...

    def bilateral3d(self, x: torch.Tensor, guide: torch.Tensor, params: FilterParams) -> torch.Tensor:
        """Filter validated, contiguous ``x`` (N, C, D, H, W) with weights from ``guide`` (N, G, D, H, W)."""
        ...

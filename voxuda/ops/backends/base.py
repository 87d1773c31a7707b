"""The filter parameters every bilateral backend takes (the backend contract itself is
:class:`voxuda.protocols.OpBackend`)."""

from __future__ import annotations

import math

import attrs

from voxuda.protocols import OpBackend

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


#: The op-backend contract, defined once in :mod:`voxuda.protocols`; the old name stays for importers.
BilateralBackend = OpBackend

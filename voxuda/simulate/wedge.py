"""Missing-wedge masks in Fourier space.

Geometry used throughout the simulator: numpy axes (z, y, x), electron beam along z at zero tilt, tilt axis
y. A projection at tilt angle theta samples the central Fourier plane containing k_y and the direction
(k_x, k_z) = (cos theta, sin theta). A Fourier point is therefore measured when the angle
``atan(k_z / k_x)`` lies inside the tilt range; the rest of the (k_x, k_z) plane is the missing wedge.
"""

from __future__ import annotations

import numpy as np

__all__ = ["wedge_mask", "sphere_mask", "missing_fraction"]


def wedge_mask(shape: tuple[int, int, int], tilt_min: float = -60.0, tilt_max: float = 60.0) -> np.ndarray:
    """0/1 mask (FFT layout) of Fourier points sampled by tilts in ``[tilt_min, tilt_max]`` degrees."""
    kz = np.fft.fftfreq(shape[0])[:, None, None]
    kx = np.fft.fftfreq(shape[2])[None, None, :]
    kz_b, kx_b = np.broadcast_arrays(kz, kx)
    ang = np.degrees(np.arctan2(kz_b, kx_b))  # (-180, 180]
    ang = np.where(ang > 90.0, ang - 180.0, ang)
    ang = np.where(ang <= -90.0, ang + 180.0, ang)  # fold to (-90, 90]
    keep = (ang >= tilt_min - 1e-9) & (ang <= tilt_max + 1e-9)
    keep |= (kz_b == 0) & (kx_b == 0)  # the k_y axis lies on every projection plane
    return np.broadcast_to(keep, shape).astype(np.float32)


def sphere_mask(shape: tuple[int, int, int], radius: float = 0.5) -> np.ndarray:
    """Float32 mask (FFT layout) of |k| <= ``radius`` cycles/voxel."""
    k = np.sqrt(
        sum(
            np.fft.fftfreq(n).reshape([n if j == i else 1 for j in range(3)]) ** 2
            for i, n in enumerate(shape)
        )
    )
    return (k <= radius + 1e-9).astype(np.float32)


def missing_fraction(tilt_min: float, tilt_max: float) -> float:
    """Analytic fraction of a Fourier *ball* lost to the wedge: ``1 - (tilt_max - tilt_min) / 180``.

    Exact for a ball because the wedge only depends on the azimuth in the (k_x, k_z) plane.
    """
    return 1.0 - (tilt_max - tilt_min) / 180.0

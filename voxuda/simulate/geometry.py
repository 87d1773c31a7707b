"""Random rotations and placing rotated, rescaled templates into a scene.

All arrays are numpy (z, y, x). A template is resampled once per placement with trilinear interpolation
directly onto the output grid (rotation, voxel-size change and sub-voxel shift in one affine map), so masks
are thresholded from the density *at the final voxel size* rather than resampled afterwards.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["random_rotation", "zyz_euler", "placed_patch", "paste"]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed 3x3 rotation matrix (from a normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def zyz_euler(rot: np.ndarray) -> tuple[float, float, float]:
    """ZYZ Euler angles (degrees) of a rotation matrix, recorded in manifests for provenance."""
    beta = math.acos(max(-1.0, min(1.0, rot[2, 2])))
    if abs(math.sin(beta)) < 1e-8:
        alpha, gamma = math.atan2(rot[1, 0], rot[0, 0]), 0.0
    else:
        alpha = math.atan2(rot[1, 2], rot[0, 2])
        gamma = math.atan2(rot[2, 1], -rot[2, 0])
    return (math.degrees(alpha), math.degrees(beta), math.degrees(gamma))


def placed_patch(
    density: np.ndarray, template_voxel: float, out_voxel: float, rot: np.ndarray, frac_shift: np.ndarray
) -> np.ndarray:
    """Resample ``density`` rotated by ``rot`` onto a cubic patch at voxel ``out_voxel``.

    The template centre lands at patch index ``m // 2 + frac_shift`` (``frac_shift`` in [-0.5, 0.5]).
    """
    s = density.shape[0]
    scale = out_voxel / template_voxel
    m = int(math.ceil(s / scale)) + 2
    m += 1 - m % 2
    cp = m // 2
    mat = rot.T * scale
    c_t = (np.asarray(density.shape) - 1) / 2.0
    offset = c_t - mat @ (np.full(3, cp, dtype=np.float64) + frac_shift)
    return ndimage.affine_transform(
        density, mat, offset=offset, output_shape=(m, m, m), order=1, mode="constant", cval=0.0
    )


def paste(scene: np.ndarray, patch: np.ndarray, center: np.ndarray, *, op: str = "add") -> None:
    """Add (or OR) ``patch`` into ``scene``, patch centre at integer index ``center``; clipped at edges."""
    m = patch.shape[0]
    cp = m // 2
    lo = np.asarray(center, dtype=int) - cp
    s_lo = np.maximum(lo, 0)
    s_hi = np.minimum(lo + m, scene.shape)
    if np.any(s_hi <= s_lo):
        return
    p_lo = s_lo - lo
    p_hi = p_lo + (s_hi - s_lo)
    ss = tuple(slice(a, b) for a, b in zip(s_lo, s_hi, strict=True))
    ps = tuple(slice(a, b) for a, b in zip(p_lo, p_hi, strict=True))
    if op == "add":
        scene[ss] += patch[ps]
    elif op == "or":
        scene[ss] |= patch[ps]
    else:
        raise ValueError(op)

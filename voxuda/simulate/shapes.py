"""Seeded procedural macromolecule-like shapes (no data files needed).

Each builder returns an indicator of the intended molecular envelope on a grid at ``voxel`` Å. The
catalogue (:mod:`.structures`) turns it into a smooth, textured density and a volume-matched iso-level,
so procedural and PDB-derived templates are handled identically downstream. Sizes follow the real
complexes they imitate (ribosome ~25 nm, TRiC ~16 nm barrel, 20S-like capped rod ~26 nm, apoferritin
12 nm shell) so crowding and box filling are realistic at 10 Å voxels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from voxuda.simulate.geometry import random_rotation

__all__ = ["SHAPE_BUILDERS", "build_indicator"]


def _grid(radius_a: float, voxel: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half = int(math.ceil(radius_a / voxel)) + 2
    ax = (np.arange(2 * half + 1) - half) * voxel
    return np.meshgrid(ax, ax, ax, indexing="ij")


def _ellipsoid(
    z: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    c: tuple[float, float, float],
    r: tuple[float, float, float],
    rot: np.ndarray | None = None,
) -> np.ndarray:
    p = np.stack([z - c[0], y - c[1], x - c[2]], axis=-1)
    if rot is not None:
        p = p @ rot
    return ((p / np.asarray(r)) ** 2).sum(-1) <= 1.0


def ribosome_like(rng: np.random.Generator, voxel: float) -> np.ndarray:
    """Two lobes (large and small subunit) with a cleft, ~25 nm."""
    z, y, x = _grid(135, voxel)
    lsu = _ellipsoid(z, y, x, (-25, 0, 0), (90, 110, 100))
    ssu = _ellipsoid(z, y, x, (75, 10, -10), (45, 95, 70))
    cleft = _ellipsoid(z, y, x, (30, 30, 0), (22, 35, 30))
    tunnel = (np.hypot(y, x - 5) < 12) & (z < -20)
    return (lsu | ssu) & ~cleft & ~tunnel


def tric_like(rng: np.random.Generator, voxel: float) -> np.ndarray:
    """Hollow double-ring barrel with 8 lumps per ring, ~16 nm."""
    z, y, x = _grid(100, voxel)
    r = np.hypot(y, x)
    phi = np.arctan2(y, x)
    outer = 78 + 8 * np.cos(8 * phi)
    wall = (r <= outer) & (r >= 42) & (np.abs(z) <= 80)
    waist = (np.abs(z) < 6) & (r > 70)
    return wall & ~waist


def proteasome_like(rng: np.random.Generator, voxel: float) -> np.ndarray:
    """Capped rod: a cylinder of stacked rings with a cap at each end, ~26 nm long."""
    z, y, x = _grid(140, voxel)
    r = np.hypot(y, x)
    core = (r <= 58) & (np.abs(z) <= 68) & ~((r < 18) & (np.abs(z) < 60))
    grooves = (np.abs(np.abs(z) - 34) < 4) & (r > 52)
    caps = _ellipsoid(z, y, x, (98, 0, 0), (32, 55, 62)) | _ellipsoid(z, y, x, (-98, 0, 0), (32, 55, 62))
    return (core & ~grooves) | caps


def _octahedral_group() -> list[np.ndarray]:
    mats = []
    for perm in ((0, 1, 2), (1, 2, 0), (2, 0, 1), (1, 0, 2), (0, 2, 1), (2, 1, 0)):
        for signs in np.ndindex(2, 2, 2):
            m = np.zeros((3, 3))
            for i, j in enumerate(perm):
                m[i, j] = 1 - 2 * signs[i]
            if np.linalg.det(m) > 0:
                mats.append(m)
    return mats


def apoferritin_like(rng: np.random.Generator, voxel: float) -> np.ndarray:
    """24 subunits with octahedral symmetry on a hollow shell, 12 nm outer diameter."""
    z, y, x = _grid(70, voxel)
    base = np.array([0.25, 0.45, 0.86])
    base /= np.linalg.norm(base)
    out = np.zeros(z.shape, dtype=bool)
    for m in _octahedral_group():
        c = m @ base * 49.0
        out |= _ellipsoid(z, y, x, tuple(c), (14, 17, 17))
    shell = (np.sqrt(z**2 + y**2 + x**2) <= 60) & (np.sqrt(z**2 + y**2 + x**2) >= 40)
    return out & shell


def gaussian_assembly(rng: np.random.Generator, voxel: float) -> np.ndarray:
    """Four anisotropic Gaussians (the aitom toy model idea), thresholded at a quarter of the peak."""
    z, y, x = _grid(75, voxel)
    dens = np.zeros(z.shape)
    for _ in range(4):
        c = rng.uniform(-30, 30, size=3)
        sig = rng.uniform(10, 26, size=3)
        rot = random_rotation(rng)
        p = np.stack([z - c[0], y - c[1], x - c[2]], axis=-1) @ rot
        dens += np.exp(-0.5 * ((p / sig) ** 2).sum(-1))
    return dens >= 0.25 * dens.max()


def pseudo_protein(rng: np.random.Generator, voxel: float) -> np.ndarray:
    """A compact random bead chain (~8-10 nm), like a small globular protein or a dimer."""
    z, y, x = _grid(60, voxel)
    pos = np.zeros(3)
    out = np.zeros(z.shape, dtype=bool)
    for _ in range(36):
        step = rng.normal(size=3)
        step = step / np.linalg.norm(step) * 12.0 - 0.08 * pos
        pos = np.clip(pos + step, -40, 40)
        out |= _ellipsoid(z, y, x, tuple(pos), (rng.uniform(12, 17),) * 3)
    return out


SHAPE_BUILDERS: dict[str, Callable[[np.random.Generator, float], np.ndarray]] = {
    "ribosome_like": ribosome_like,
    "tric_like": tric_like,
    "proteasome_like": proteasome_like,
    "apoferritin_like": apoferritin_like,
    "gaussian_assembly": gaussian_assembly,
    "pseudo_protein": pseudo_protein,
}


def build_indicator(kind: str, seed: int, voxel: float = 10.0) -> np.ndarray:
    """Indicator (bool cube) of procedural shape ``kind`` built with ``seed``."""
    try:
        fn = SHAPE_BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown procedural shape {kind!r}; known: {', '.join(SHAPE_BUILDERS)}") from None
    return fn(np.random.default_rng(seed), voxel)

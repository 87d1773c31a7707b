"""Compose one subtomogram scene: a main particle, optional crowding neighbours and gold/ice outliers.

Returns the clean density of the scene and the ground-truth protein mask at the final voxel size. The mask
is the union of every particle's density thresholded at its template's volume-matched level — neighbours
cut by the box edge are foreground too (label = all protein), outliers (gold) are background.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from voxuda.simulate.geometry import paste, placed_patch, random_rotation, zyz_euler
from voxuda.simulate.structures import Template

__all__ = ["Scene", "compose_scene"]


@dataclass
class Scene:
    density: np.ndarray  # (n, n, n) float32, clean
    mask: np.ndarray  # (n, n, n) bool
    main_euler: tuple[float, float, float]
    main_shift: tuple[float, float, float]
    neighbours: list[str] = field(default_factory=list)
    outlier: bool = False


def _place(
    scene: Scene, t: Template, voxel: float, center: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    rot = random_rotation(rng)
    q = np.round(center).astype(int)
    patch = placed_patch(t.density, t.voxel_size, voxel, rot, center - q)
    paste(scene.density, patch.astype(np.float32), q)
    paste(scene.mask, patch > t.level, q, op="or")
    return rot


def compose_scene(
    main: Template,
    *,
    n: int,
    box: int,
    voxel: float,
    rng: np.random.Generator,
    shift_fraction: float = 0.1,
    neighbours: list[Template] | None = None,
    outlier_probability: float = 0.0,
) -> Scene:
    """Scene of edge ``n`` around a ``box`` crop; the main particle is shifted by ≤ ``shift_fraction``·box."""
    scene = Scene(
        np.zeros((n, n, n), np.float32), np.zeros((n, n, n), bool), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    )
    c = np.full(3, (n - 1) / 2.0)
    shift = rng.uniform(-shift_fraction, shift_fraction, size=3) * box
    rot = _place(scene, main, voxel, c + shift, rng)
    scene.main_euler = zyz_euler(rot)
    scene.main_shift = tuple(float(s) for s in shift)  # type: ignore[assignment]
    r_main = main.radius / voxel
    for nb in neighbours or []:
        r_nb = nb.radius / voxel
        for _ in range(12):
            u = rng.normal(size=3)
            u /= np.abs(u).max()  # a point on the unit cube surface: lands the neighbour at a box face
            depth = rng.uniform(-0.45, 0.35) * r_nb
            pos = c + u * (box / 2.0 + depth)
            if np.linalg.norm(pos - (c + shift)) >= 0.75 * (r_main + r_nb):
                _place(scene, nb, voxel, pos, rng)
                scene.neighbours.append(nb.name)
                break
    if rng.random() < outlier_probability:
        # A gold bead (~10 nm, very dense) somewhere in the scene: high-contrast nuisance, not protein.
        pos = rng.uniform(0, n, size=3)
        zz, yy, xx = np.ogrid[:n, :n, :n]
        r2 = (zz - pos[0]) ** 2 + (yy - pos[1]) ** 2 + (xx - pos[2]) ** 2
        bead = (r2 <= (50.0 / voxel) ** 2) & ~scene.mask
        scene.density[bead] += 6.0
        scene.outlier = True
    return scene

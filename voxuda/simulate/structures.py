"""Template catalogue: every molecular class the simulator can place.

A :class:`Template` is a density cube at a known voxel size with a *volume-matched* iso-level, i.e. the
level at which the thresholded volume equals the molecule's volume. Thresholds relative to the maximum are
avoided on purpose: metal ions in real structures (Mg2+ in ribosomes) dominate the maximum.

Two kinds of class:

* ``procedural`` — built from :mod:`.shapes` with a fixed seed (no files);
* ``pdb`` — small 10 Å maps computed from public PDB coordinates by ``scripts/make_structure_maps.py`` and
  committed under ``voxuda/data/structures/`` (``<name>.npz`` + ``<name>.json`` provenance sidecar).

Densities are scaled so the mean density inside the envelope is 1, which keeps contrast comparable
between classes, and between main particles and crowding neighbours.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from voxuda.data.errors import DataError
from voxuda.jsonio import read_json
from voxuda.simulate.shapes import build_indicator

__all__ = [
    "Template",
    "CLASSES",
    "STRUCTURE_DIR",
    "volume_matched_level",
    "normalize_template",
    "load_template",
    "available_classes",
]

#: Folder with committed PDB-derived maps.
STRUCTURE_DIR = Path(__file__).resolve().parent.parent / "data" / "structures"

#: Protein partial specific volume used for volume matching (Å^3 per Dalton; rho = 1.35 g/cm^3).
ANGSTROM3_PER_DALTON = 1.21


@dataclass(frozen=True)
class Template:
    """A class template: density (float32 cube), voxel size (Å), iso-level, bounding radius (Å)."""

    name: str
    density: np.ndarray
    voxel_size: float
    level: float
    radius: float
    provenance: dict[str, Any] = field(default_factory=dict)


#: name -> ("procedural", shape kind) or ("pdb", map file stem). Names are class names in manifests.
CLASSES: dict[str, tuple[str, str]] = {
    "ribosome_like": ("procedural", "ribosome_like"),
    "tric_like": ("procedural", "tric_like"),
    "proteasome_like": ("procedural", "proteasome_like"),
    "apoferritin_like": ("procedural", "apoferritin_like"),
    "gaussian_assembly_a": ("procedural", "gaussian_assembly"),
    "gaussian_assembly_b": ("procedural", "gaussian_assembly"),
    "gaussian_assembly_c": ("procedural", "gaussian_assembly"),
    "pseudo_protein_a": ("procedural", "pseudo_protein"),
    "pseudo_protein_b": ("procedural", "pseudo_protein"),
    "pseudo_protein_c": ("procedural", "pseudo_protein"),
    "ribosome_4v5d": ("pdb", "ribosome_4v5d"),
    "ribosome_6zu5": ("pdb", "ribosome_6zu5"),
    "tric_4v8r": ("pdb", "tric_4v8r"),
    "apoferritin_4v1w": ("pdb", "apoferritin_4v1w"),
    "spliceosome_3jb9": ("pdb", "spliceosome_3jb9"),
    "ruvab_7pbl": ("pdb", "ruvab_7pbl"),
    "enolase_3enl": ("pdb", "enolase_3enl"),
    "glua_ntd_3o21": ("pdb", "glua_ntd_3o21"),
}


def volume_matched_level(density: np.ndarray, n_voxels: int) -> float:
    """Iso-level at which exactly ``n_voxels`` voxels (the molecular volume) lie above it."""
    flat = np.sort(density.ravel())[::-1]
    n = int(np.clip(n_voxels, 1, flat.size - 1))
    return float(0.5 * (flat[n - 1] + flat[n]))


def normalize_template(density: np.ndarray, level: float) -> tuple[np.ndarray, float]:
    """Scale so the mean inside the envelope is 1; returns the scaled density and level."""
    inside = density[density > level]
    scale = 1.0 / float(inside.mean()) if inside.size else 1.0
    return (density * scale).astype(np.float32), level * scale


def _bounding_radius(density: np.ndarray, level: float, voxel: float) -> float:
    idx = np.argwhere(density > level)
    c = (np.asarray(density.shape) - 1) / 2.0
    return float(np.sqrt(((idx - c) ** 2).sum(1)).max() * voxel) if idx.size else 0.0


def _procedural(name: str, kind: str, voxel: float) -> Template:
    seed = zlib.crc32(name.encode())
    ind = build_indicator(kind, seed, voxel)
    rng = np.random.default_rng(seed + 1)
    texture = ndimage.gaussian_filter(rng.normal(size=ind.shape), 1.0)
    texture /= texture.std() + 1e-12
    dens = ndimage.gaussian_filter(ind * (1.0 + 0.25 * texture), 0.7)
    level = volume_matched_level(dens, int(ind.sum()))
    dens, level = normalize_template(dens, level)
    prov = {"kind": "procedural", "shape": kind, "seed": seed, "voxel_size": voxel}
    return Template(name, dens, voxel, level, _bounding_radius(dens, level, voxel), prov)


def _from_map(name: str, stem: str) -> Template:
    npz = STRUCTURE_DIR / f"{stem}.npz"
    if not npz.is_file():
        raise DataError(
            npz, f"structure map for class {name!r} is missing", "run scripts/make_structure_maps.py"
        )
    with np.load(npz, allow_pickle=False) as z:
        dens = z["density"].astype(np.float32)
        voxel = float(z["voxel_size"])
        level = float(z["level"])
    side = npz.with_suffix(".json")
    prov = read_json(side, default={})
    return Template(name, dens, voxel, level, _bounding_radius(dens, level, voxel), prov)


@functools.cache
def load_template(name: str, voxel: float = 10.0) -> Template:
    """The template of class ``name`` (cached per process)."""
    try:
        kind, ref = CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown class {name!r}; known: {', '.join(CLASSES)}") from None
    if kind == "procedural":
        return _procedural(name, ref, voxel)
    return _from_map(name, ref)


def available_classes() -> list[str]:
    """Classes whose templates can be built here (PDB maps present)."""
    return [
        n for n, (k, ref) in CLASSES.items() if k == "procedural" or (STRUCTURE_DIR / f"{ref}.npz").is_file()
    ]

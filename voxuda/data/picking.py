"""Particle picks from a segmentation: connected components of a label map, written as RELION STAR or CSV.

Why it is here: a segmentation is usually a means to particle positions (subtomogram averaging, or a target
set for the next round of adaptation); ``voxuda segment`` writes the label map, this turns it into picks that
:func:`voxuda.data.extract.read_picks` and RELION read.  Coordinates are in tomogram **pixels**
(``rlnCoordinateX/Y/Z``, x fastest, the convention :mod:`voxuda.data.extract` and RELION use), measured from
the first voxel; the label map's voxel size and origin go into the STAR file as ``rlnTomoPixelSize`` and the
CSV as columns, so physical positions can be recovered.

Memory: the component labelling holds one int32 per voxel (0.8 GB for 512 x 512 x 800); segment a smaller
region or bin the label map for larger tomograms.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from voxuda.data.errors import DataError
from voxuda.data.mrc import VolumeInfo, atomic_path, read_labels

__all__ = ["Particle", "find_particles", "pick_from_labels", "write_picks"]


@dataclass(frozen=True)
class Particle:
    """One connected component: centroid in pixels (x, y, z) and its size in voxels."""

    x: float
    y: float
    z: float
    voxels: int
    class_value: int


def find_particles(
    labels: np.ndarray,
    *,
    class_values: tuple[int, ...] | None = None,
    min_voxels: int = 1,
    max_voxels: int | None = None,
    connectivity: int = 26,
) -> list[Particle]:
    """Connected components of each foreground class, filtered by size, largest first.

    ``class_values`` defaults to every non-zero label.  ``connectivity`` is 6 (faces), 18 (faces and edges)
    or 26 (all neighbours): 26 keeps a thin particle in one piece, 6 separates touching ones more often.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3-D array, got shape {labels.shape}")
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    if min_voxels < 1 or (max_voxels is not None and max_voxels < min_voxels):
        raise ValueError(f"need 1 <= min_voxels <= max_voxels, got {min_voxels} and {max_voxels}")
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    values = class_values if class_values is not None else tuple(int(v) for v in np.unique(labels) if v != 0)
    found: list[Particle] = []
    for value in values:
        mask = labels == value
        components, count = ndimage.label(mask, structure=structure, output=np.int32)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        centres = ndimage.center_of_mass(mask, components, np.arange(1, count + 1))
        for size, (z, y, x) in zip(sizes, centres, strict=True):
            size = int(size)
            if size < min_voxels or (max_voxels is not None and size > max_voxels):
                continue
            found.append(Particle(float(x), float(y), float(z), size, int(value)))
    return sorted(found, key=lambda p: (-p.voxels, p.z, p.y, p.x))


def _star_text(particles: list[Particle], info: VolumeInfo, tomo_name: str) -> str:
    out = io.StringIO()
    out.write("# written by voxuda pick: centroids of connected components, in tomogram pixels\n\n")
    out.write("data_particles\n\nloop_\n")
    columns = ("rlnTomoName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", "rlnClassNumber",
               "rlnTomoPixelSize", "voxudaComponentVoxels")
    for i, name in enumerate(columns, start=1):
        out.write(f"_{name} #{i}\n")
    pixel = info.voxel_size[2]
    for p in particles:
        out.write(f"{tomo_name} {p.x:.2f} {p.y:.2f} {p.z:.2f} {p.class_value} {pixel:.4f} {p.voxels}\n")
    return out.getvalue()


def _csv_text(particles: list[Particle], info: VolumeInfo) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["x", "y", "z", "class", "voxels", "x_angstrom", "y_angstrom", "z_angstrom"])
    (vz, vy, vx), (oz, oy, ox) = info.voxel_size, info.origin
    for p in particles:
        writer.writerow([f"{p.x:.2f}", f"{p.y:.2f}", f"{p.z:.2f}", p.class_value, p.voxels,
                         f"{ox + p.x * vx:.1f}", f"{oy + p.y * vy:.1f}", f"{oz + p.z * vz:.1f}"])
    return out.getvalue()


def write_picks(particles: list[Particle], path: str | os.PathLike[str], info: VolumeInfo,
                tomo_name: str) -> Path:
    """Write ``.star`` (RELION particle loop) or ``.csv`` by suffix, atomically."""
    dest = Path(path)
    suffix = dest.suffix.lower()
    if suffix not in (".star", ".csv"):
        raise DataError(dest, f"unknown picks format {suffix or '(no suffix)'!r}",
                        "name the output .star or .csv")
    if not dest.parent.is_dir():
        raise DataError(dest, "output folder does not exist", "create it first or choose another path")
    text = _star_text(particles, info, tomo_name) if suffix == ".star" else _csv_text(particles, info)
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return dest


def pick_from_labels(
    labels_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    class_values: tuple[int, ...] | None = None,
    min_voxels: int = 1,
    max_voxels: int | None = None,
    connectivity: int = 26,
    tomo_name: str | None = None,
) -> list[Particle]:
    """Read a label MRC (e.g. from ``voxuda segment``), find particles, write them; returns the particles."""
    labels, info = read_labels(labels_path)
    particles = find_particles(labels, class_values=class_values, min_voxels=min_voxels,
                               max_voxels=max_voxels, connectivity=connectivity)
    write_picks(particles, output, info, tomo_name or Path(labels_path).stem)
    return particles

"""Particle picks: found in a segmentation, read from and written to RELION 4/5 STAR or CSV files.

Why it is here: a segmentation is usually a means to particle positions (subtomogram averaging, or a target
set for the next round of adaptation); ``voxuda segment`` writes the label map, :func:`pick_from_labels` turns
it into picks, and :func:`read_picks` brings picks from RELION, Warp or copick to ``voxuda extract``.

Coordinate conventions (all positions end up in **pixels of the tomogram being cut**, x fastest, from the
centre of the first voxel):

* RELION 4 (``rlnCoordinateX/Y/Z``): pixels. RELION 4 counts them in pixels of the tilt series, whose size
  the optics table gives as ``rlnTomoTiltSeriesPixelSize``; when it is there and differs from the
  tomogram's voxel size, the picks are rescaled (with a note). ``--picks-pixel-size`` or ``--picks-binning``
  state the pixel size of the coordinates explicitly.
* RELION 5 (``rlnCenteredCoordinateX/Y/ZAngst``): Å from the centre of the tomogram, whose position in pixels
  is ``size / 2`` per axis (RELION's ``ParticleSet::getPosition``); converted with the tomogram header's
  size and pixel size. ``rlnOriginX/Y/ZAngst`` refinement shifts are not applied (sub-voxel at the binning
  one segments at).
* CSV (``x,y,z[,class]``): pixels of the tomogram, rescaled like RELION 4 when asked.

Written STAR files carry standard labels only: ``rlnTomoName``, the coordinates, ``rlnClassNumber`` and
``rlnOpticsGroup``, with an optics table whose ``rlnTomoTiltSeriesPixelSize`` is the tomogram's voxel size
(the pixel frame of the coordinates; RELION has no label for a tomogram's own pixel size in a particle file).

Memory: the component labelling holds one int32 per voxel (0.8 GB for 512 x 512 x 800); segment a smaller
region or bin the label map for larger tomograms.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from scipy import ndimage

from voxuda.data.errors import DataError
from voxuda.data.mrc import (
    Note,
    VolumeInfo,
    atomic_path,
    open_tomogram,
    read_header,
    read_labels,
    stderr_note,
)
from voxuda.data.star import read_star, write_star
from voxuda.errors import ConfigError

__all__ = [
    "Particle",
    "Pick",
    "TomogramGeometry",
    "RELION_VERSIONS",
    "find_particles",
    "pick_from_labels",
    "read_picks",
    "write_picks",
]

#: ``--relion`` values: 4 writes pixel coordinates, 5 centred Å coordinates.
RELION_VERSIONS: tuple[int, ...] = (4, 5)

_PIXEL_COLUMNS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
_CENTRED_COLUMNS = (
    "rlnCenteredCoordinateXAngst",
    "rlnCenteredCoordinateYAngst",
    "rlnCenteredCoordinateZAngst",
)
_TILT_SERIES_PIXEL = "rlnTomoTiltSeriesPixelSize"


@dataclass(frozen=True)
class TomogramGeometry:
    """What picks need to know of a tomogram: its name, shape (z, y, x) and geometry (voxel size, origin)."""

    name: str
    shape: tuple[int, int, int]
    info: VolumeInfo

    @classmethod
    def of_file(cls, path: str | os.PathLike[str], *, name: str | None = None,
                voxel_size: float | None = None) -> TomogramGeometry:
        """Geometry from an MRC header (``voxel_size`` overrides the header's, as ``--voxel-size`` does)."""
        p = Path(path)
        with open_tomogram(p, voxel_size=voxel_size, note=None) as tomo:
            return cls(name or p.stem, tomo.shape, tomo.info)

    @property
    def voxel_size(self) -> float:
        """The x voxel size in Å (tomograms are isotropic in practice; x is RELION's reference axis)."""
        return float(self.info.voxel_size[2])


@dataclass(frozen=True)
class Pick:
    """A particle position in pixels (x, y, z) of the tomogram it is cut from, and a class name."""

    x: float
    y: float
    z: float
    class_name: str = "unknown"


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
        components, count = ndimage.label(mask, structure=structure)  # int32 labels, as output=np.int32 gave
        if count == 0:
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        # one (z, y, x) per index; the stub types the result for every index form at once
        centres = cast("list[tuple[float, float, float]]",
                       ndimage.center_of_mass(mask, components, np.arange(1, count + 1)))
        for size, (z, y, x) in zip(sizes, centres, strict=True):
            size = int(size)
            if size < min_voxels or (max_voxels is not None and size > max_voxels):
                continue
            found.append(Particle(float(x), float(y), float(z), size, int(value)))
    return sorted(found, key=lambda p: (-p.voxels, p.z, p.y, p.x))


def _rows_centred_angstrom(particles: Sequence[Particle], geo: TomogramGeometry) -> list[tuple[float, ...]]:
    (vz, vy, vx), (nz, ny, nx) = geo.info.voxel_size, geo.shape
    return [((p.x - nx / 2) * vx, (p.y - ny / 2) * vy, (p.z - nz / 2) * vz) for p in particles]


def _star_blocks(particles: Sequence[Particle], geo: TomogramGeometry, relion: int) -> dict[str, Any]:
    import pandas as pd

    if relion not in RELION_VERSIONS:
        raise ConfigError(f"--relion {relion}: write RELION 4 (pixels) or 5 (centred Å) coordinates")
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           _TILT_SERIES_PIXEL: [geo.voxel_size]})
    coords: list[tuple[float, ...]]
    if relion == 4:
        coords = [(p.x, p.y, p.z) for p in particles]
        columns = _PIXEL_COLUMNS
    else:
        coords = _rows_centred_angstrom(particles, geo)
        columns = _CENTRED_COLUMNS
    table: dict[str, list[Any]] = {"rlnTomoName": [geo.name] * len(particles)}
    for axis, column in enumerate(columns):
        table[column] = [round(float(c[axis]), 4) for c in coords]
    table["rlnClassNumber"] = [p.class_value for p in particles]
    table["rlnOpticsGroup"] = [1] * len(particles)
    return {"optics": optics, "particles": pd.DataFrame(table)}


def _csv_text(particles: Sequence[Particle], info: VolumeInfo) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["x", "y", "z", "class", "voxels", "x_angstrom", "y_angstrom", "z_angstrom"])
    (vz, vy, vx), (oz, oy, ox) = info.voxel_size, info.origin
    for p in particles:
        writer.writerow([f"{p.x:.2f}", f"{p.y:.2f}", f"{p.z:.2f}", p.class_value, p.voxels,
                         f"{ox + p.x * vx:.1f}", f"{oy + p.y * vy:.1f}", f"{oz + p.z * vz:.1f}"])
    return out.getvalue()


def write_picks(particles: Sequence[Particle], path: str | os.PathLike[str], geometry: TomogramGeometry,
                *, relion: int = 4) -> Path:
    """Write ``.star`` (RELION ``relion`` 4 or 5 particle file) or ``.csv`` by suffix, atomically."""
    dest = Path(path)
    suffix = dest.suffix.lower()
    if suffix not in (".star", ".csv"):
        raise DataError(dest, f"unknown picks format {suffix or '(no suffix)'!r}",
                        "name the output .star or .csv")
    if not dest.parent.is_dir():
        raise DataError(dest, "output folder does not exist", "create it first or choose another path")
    if suffix == ".csv":
        with atomic_path(dest) as tmp:
            tmp.write_text(_csv_text(particles, geometry.info), encoding="utf-8")
        return dest
    unit = "tomogram pixels" if relion == 4 else "Å from the tomogram centre"
    return write_star(_star_blocks(particles, geometry, relion), dest,
                      comment=f"written by voxuda pick: centroids of connected components, in {unit}")


# ---------------------------------------------------------------------------------------------- reading


def _positive(value: float | None, option: str) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} {value}: must be a positive number")
    return value


def _coordinate_columns(path: Path, frame: Any, columns: Sequence[str], block: str) -> np.ndarray:
    """``(n, 3)`` float64 coordinates; a missing, non-numeric or NaN cell names its row."""
    import pandas as pd

    out = np.empty((len(frame), 3), np.float64)
    for axis, column in enumerate(columns):
        if column not in frame.columns:
            raise DataError(path, f"{block}: column {column} missing", "give all three coordinates")
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            row = int(bad[0])
            raw = frame[column].iloc[row]
            raise DataError(path, f"{block} row {row + 1}: {column} is {raw!r} (not a finite number)"
                            + (f"; {bad.size} such rows" if bad.size > 1 else ""), "fix or remove that row")
        out[:, axis] = values
    return out


def _particles_block(path: Path, blocks: dict[str, Any]) -> tuple[str, Any, bool]:
    candidates = sorted(blocks.items(), key=lambda kv: kv[0] != "particles")
    for name, frame in candidates:
        if set(_CENTRED_COLUMNS) & set(frame.columns):
            return name, frame, True
        if set(_PIXEL_COLUMNS) & set(frame.columns):
            return name, frame, False
    raise DataError(path, "no loop with rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst",
                    "export picks as a RELION 4 or 5 particle STAR file")


def _tilt_series_pixel(blocks: dict[str, Any], frame: Any) -> np.ndarray | None:
    """Per-row ``rlnTomoTiltSeriesPixelSize`` of the optics table (RELION 4: the coordinates' pixel)."""
    import pandas as pd

    if _TILT_SERIES_PIXEL in frame.columns:
        return pd.to_numeric(frame[_TILT_SERIES_PIXEL], errors="coerce").to_numpy(np.float64)
    optics = blocks.get("optics")
    if optics is None or _TILT_SERIES_PIXEL not in optics.columns or not len(optics):
        return None
    sizes = pd.to_numeric(optics[_TILT_SERIES_PIXEL], errors="coerce").to_numpy(np.float64)
    if len(optics) == 1 or "rlnOpticsGroup" not in frame.columns or "rlnOpticsGroup" not in optics.columns:
        return np.full(len(frame), sizes[0])
    lookup = dict(zip(optics["rlnOpticsGroup"].astype(int), sizes, strict=True))
    return np.array([lookup.get(int(g), np.nan) for g in frame["rlnOpticsGroup"]], np.float64)


def _tomo_names(frame: Any) -> list[str] | None:
    for column in ("rlnTomoName", "rlnMicrographName"):
        if column in frame.columns:
            return [Path(str(v).split(":")[0]).stem for v in frame[column]]
    return None


def _scale_pixels(xyz: np.ndarray, *, path: Path, geometry: TomogramGeometry | None, pixel_size: float | None,
                  binning: float | None, file_pixel: np.ndarray | None, note: Note | None) -> np.ndarray:
    """Pixel coordinates of the picks' frame -> pixels of ``geometry``'s tomogram."""
    if binning is not None:
        return xyz / binning
    if pixel_size is not None:
        if geometry is None:
            raise ConfigError("--picks-pixel-size needs the tomogram the picks are used on (its pixel size)")
        return xyz * (pixel_size / geometry.voxel_size)
    if file_pixel is None or geometry is None:
        return xyz
    if not np.all(np.isfinite(file_pixel) & (file_pixel > 0)):
        raise DataError(path, f"{_TILT_SERIES_PIXEL} missing or not positive for some picks",
                        "fix the optics table or pass --picks-pixel-size")
    factor = file_pixel / geometry.voxel_size
    if np.any(np.abs(factor - 1.0) > 1e-3) and note is not None:
        note(f"{path}: coordinates are in {_TILT_SERIES_PIXEL} = {np.unique(file_pixel)[0]:g} Å pixels; "
             f"rescaled to the tomogram's {geometry.voxel_size:g} Å voxels (x {np.unique(factor)[0]:.4g}); "
             "pass --picks-pixel-size or --picks-binning if the coordinates are in another frame")
    return xyz * factor[:, None]


def _read_csv(path: Path) -> tuple[np.ndarray, list[str]]:
    if not path.is_file():
        raise DataError(path, "picks file not found", "check the coordinates path")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"x", "y", "z"} <= set(reader.fieldnames):
            raise DataError(path, "CSV picks need columns x,y,z (optional class)", "add a header line x,y,z")
        rows = list(reader)
    xyz = np.empty((len(rows), 3), np.float64)
    for n, row in enumerate(rows):
        for axis, key in enumerate("xyz"):
            try:
                value = float(row[key])
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise DataError(path, f"row {n + 2}: {key} is {row[key]!r} (not a finite number)",
                                "fix or remove that row")
            xyz[n, axis] = value
    return xyz, [row.get("class") or "unknown" for row in rows]


def read_picks(
    path: str | os.PathLike[str],
    tomogram_name: str | None = None,
    *,
    geometry: TomogramGeometry | None = None,
    pixel_size: float | None = None,
    binning: float | None = None,
    note: Note | None = stderr_note,
) -> list[Pick]:
    """Picks of a RELION 4/5 STAR or CSV file, in pixels of the tomogram described by ``geometry``.

    ``tomogram_name`` keeps the rows whose ``rlnTomoName`` (or ``rlnMicrographName``) stem matches it
    (default: ``geometry.name``); a file with rows but none for it is an error listing the names it holds.
    ``pixel_size`` (Å) or ``binning`` (the tomogram's binning relative to the picks: 4 for unbinned picks
    on a bin-4 tomogram) rescale pixel coordinates; RELION 5 files need ``geometry`` and take neither.
    """
    p = Path(path)
    _positive(pixel_size, "--picks-pixel-size")
    _positive(binning, "--picks-binning")
    if pixel_size is not None and binning is not None:
        raise ConfigError("give --picks-pixel-size or --picks-binning, not both")
    wanted = tomogram_name if tomogram_name is not None else (geometry.name if geometry else None)
    if p.suffix.lower() != ".star":
        xyz, classes = _read_csv(p)
        xyz = _scale_pixels(xyz, path=p, geometry=geometry, pixel_size=pixel_size, binning=binning,
                            file_pixel=None, note=note)
        return [Pick(float(x), float(y), float(z), c) for (x, y, z), c in zip(xyz, classes, strict=True)]
    blocks = read_star(p)
    block, frame, centred = _particles_block(p, blocks)
    names = _tomo_names(frame)
    keep = np.ones(len(frame), bool)
    if wanted is not None and names is not None:
        keep = np.array([n == Path(wanted).stem for n in names], bool)
        if len(frame) and not keep.any():
            raise DataError(
                p, f"no picks for tomogram {Path(wanted).stem!r}; the file names {sorted(set(names))}",
                "pass the tomogram name the picks were made on (voxuda extract --tomo-name)",
            )
    frame = frame[keep]
    if centred:
        if pixel_size is not None or binning is not None:
            raise ConfigError("--picks-pixel-size/--picks-binning rescale pixel coordinates; RELION 5 "
                              "centred coordinates are in Å and converted with the tomogram's pixel size")
        if geometry is None:
            raise DataError(p, "RELION 5 centred coordinates (Å from the tomogram centre) need the "
                            "tomogram's size and pixel size", "pass the tomogram they belong to")
        angstrom = _coordinate_columns(p, frame, _CENTRED_COLUMNS, f"data_{block}")
        (vz, vy, vx), (nz, ny, nx) = geometry.info.voxel_size, geometry.shape
        xyz = angstrom / np.array([vx, vy, vz]) + np.array([nx, ny, nz]) / 2.0
    else:
        xyz = _coordinate_columns(p, frame, _PIXEL_COLUMNS, f"data_{block}")
        xyz = _scale_pixels(xyz, path=p, geometry=geometry, pixel_size=pixel_size, binning=binning,
                            file_pixel=_tilt_series_pixel(blocks, frame), note=note)
    numbers = [str(v) for v in frame["rlnClassNumber"]] if "rlnClassNumber" in frame.columns else None
    return [Pick(float(x), float(y), float(z), numbers[i] if numbers else "unknown")
            for i, (x, y, z) in enumerate(xyz)]


def pick_from_labels(
    labels_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    class_values: tuple[int, ...] | None = None,
    min_voxels: int = 1,
    max_voxels: int | None = None,
    connectivity: int = 26,
    tomo_name: str | None = None,
    tomogram: str | os.PathLike[str] | None = None,
    relion: int = 4,
    note: Note | None = stderr_note,
) -> list[Particle]:
    """Read a label MRC (e.g. from ``voxuda segment``), find particles, write them; returns the particles.

    ``tomogram`` (the segmented tomogram) gives the picks its name and geometry, so ``voxuda extract`` and
    RELION match them to it; without it the label map's own name and geometry are used, with a note.
    """
    if relion not in RELION_VERSIONS:
        raise ConfigError(f"--relion {relion}: write RELION 4 (pixels) or 5 (centred Å) coordinates")
    shape, info, _ = read_header(labels_path)
    if tomogram is not None:
        geometry = TomogramGeometry.of_file(tomogram, name=tomo_name)
        if geometry.shape != shape:
            raise DataError(labels_path, f"label map shape {shape} differs from the tomogram's "
                            f"{geometry.shape} ({tomogram})",
                            "pick on the label map voxuda segment wrote for that tomogram")
    else:
        geometry = TomogramGeometry(tomo_name or Path(labels_path).stem, shape, info)
    labels, _ = read_labels(labels_path)
    particles = find_particles(labels, class_values=class_values, min_voxels=min_voxels,
                               max_voxels=max_voxels, connectivity=connectivity)
    write_picks(particles, output, geometry, relion=relion)
    if tomogram is None and tomo_name is None and note is not None and Path(output).suffix.lower() == ".star":
        note(f"the picks name their tomogram {geometry.name!r} after the label file; pass --tomogram "
             "TOMO.mrc (or --tomo-name) so voxuda extract and RELION match them to the tomogram")
    return particles

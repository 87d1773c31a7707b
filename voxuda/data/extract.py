"""Cut subtomograms out of a tomogram at picked coordinates and write them as a target dataset.

Real users build a target set from their picks: a RELION STAR file (``_rlnCoordinateX/Y/Z``, optional
``_rlnTomoName``/``_rlnMicrographName`` and ``_rlnClassNumber``) or a CSV with columns ``x,y,z[,class]``,
coordinates in **pixels** of the tomogram. The tomogram is memory-mapped, so only the boxes are read.
Each subtomogram keeps the tomogram's voxel size, and its origin records where it was cut from.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxuda.data.errors import DataError
from voxuda.data.manifest import ManifestRow, write_manifest
from voxuda.data.mrc import open_tomogram, write_volume
from voxuda.data.star import read_star

__all__ = ["Pick", "read_picks", "extract_subtomograms"]


@dataclass(frozen=True)
class Pick:
    """A particle position in tomogram pixels (x, y, z) and an optional class name."""

    x: float
    y: float
    z: float
    class_name: str = "unknown"


def _num(path: Path, row: dict[str, str], key: str) -> float:
    try:
        return float(row[key])
    except (KeyError, ValueError) as exc:
        raise DataError(
            path, f"coordinate {key} missing or not a number in row {row}", "fix the picks file"
        ) from exc


def read_picks(path: str | os.PathLike[str], tomogram_name: str | None = None) -> list[Pick]:
    """Read picks from a STAR (``.star``) or CSV file; ``tomogram_name`` filters multi-tomogram STAR files."""
    p = Path(path)
    if p.suffix.lower() == ".star":
        blocks = read_star(p)
        rows = next((r for r in blocks.values() if r and "rlnCoordinateX" in r[0]), None)
        if rows is None:
            raise DataError(
                p, "no loop with _rlnCoordinateX/Y/Z", "export picks as a RELION particle STAR file"
            )
        picks = []
        names: set[str] = set()
        for r in rows:
            tomo = r.get("rlnTomoName", r.get("rlnMicrographName"))
            if tomo is not None:
                names.add(Path(tomo).stem)
            if tomogram_name is not None and tomo is not None and Path(tomo).stem != Path(tomogram_name).stem:
                continue
            cls = r.get("rlnClassNumber", "unknown")
            picks.append(
                Pick(
                    _num(p, r, "rlnCoordinateX"),
                    _num(p, r, "rlnCoordinateY"),
                    _num(p, r, "rlnCoordinateZ"),
                    cls,
                )
            )
        if rows and not picks and tomogram_name is not None:
            raise DataError(
                p, f"no picks for tomogram {Path(tomogram_name).stem!r}; the file names {sorted(names)}",
                "pass the tomogram name the picks were made on (voxuda extract --tomo-name)",
            )
        return picks
    if not p.is_file():
        raise DataError(p, "picks file not found", "check the coordinates path")
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"x", "y", "z"} <= set(reader.fieldnames):
            raise DataError(p, "CSV picks need columns x,y,z (optional class)", "add a header line x,y,z")
        return [
            Pick(_num(p, r, "x"), _num(p, r, "y"), _num(p, r, "z"), r.get("class") or "unknown")
            for r in reader
        ]


def extract_subtomograms(
    tomogram: str | os.PathLike[str],
    picks: str | os.PathLike[str] | list[Pick],
    out: str | os.PathLike[str],
    *,
    box: int = 32,
    border: str = "skip",
    domain: str = "target",
    split: str = "test",
    polarity: str = "dark",
    tomogram_name: str | None = None,
) -> Path:
    """Write one MRC per pick (``box``^3 voxels) plus ``manifest.csv`` in ``out``; returns the manifest path.

    ``border="skip"`` drops boxes that cross the tomogram edge, ``"pad"`` fills the outside with the mean of
    the part inside. ``polarity`` is that of the data (``dark`` for ordinary underfocus tomograms).
    """
    if border not in ("skip", "pad"):
        raise ValueError(f"border must be skip or pad, got {border!r}")
    if box < 1:
        raise ValueError(f"box must be at least 1, got {box}")
    plist = picks if isinstance(picks, list) else read_picks(picks, tomogram_name or Path(tomogram).name)
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    rows: list[ManifestRow] = []
    with open_tomogram(tomogram) as tomo:
        shape = np.asarray(tomo.shape)
        stem = Path(tomogram).stem
        for i, pk in enumerate(plist):
            centre = np.array([pk.z, pk.y, pk.x])
            lo = np.array([int(math.floor(c)) for c in centre]) - box // 2
            hi = lo + box
            inside = bool(np.all(lo >= 0) and np.all(hi <= shape))
            if not inside and border == "skip":
                continue
            a, b = np.maximum(lo, 0), np.minimum(hi, shape)
            if np.any(b <= a):
                continue
            part = tomo.read(tuple(slice(int(x), int(y)) for x, y in zip(a, b, strict=True)))
            if inside:
                sub = part
            else:
                sub = np.full((box, box, box), float(part.mean()), np.float32)
                o = a - lo
                sub[tuple(slice(int(x), int(x) + n) for x, n in zip(o, part.shape, strict=True))] = part
            sid = f"{stem}-{i:05d}"
            info = tomo.info.shifted(tuple(int(v) for v in lo))  # type: ignore[arg-type]
            path = write_volume(dest / f"{sid}.mrc", sub, info)
            rows.append(
                ManifestRow(
                    id=sid,
                    split=split,
                    domain=domain,
                    class_name=str(pk.class_name),
                    voxel_size=float(tomo.info.voxel_size[0]),
                    polarity=polarity,
                    snr=math.nan,
                    defocus=math.nan,
                    seed="",
                    volume=path,
                    label=None,
                    extra={
                        "tomogram": str(Path(tomogram).resolve()),
                        "x": repr(pk.x),
                        "y": repr(pk.y),
                        "z": repr(pk.z),
                    },
                )
            )
    if not rows:
        raise DataError(
            tomogram, "no pick produced a subtomogram", "check coordinates are in pixels, or use border='pad'"
        )
    return write_manifest(rows, dest / "manifest.csv")

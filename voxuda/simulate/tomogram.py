"""One crowded, whole simulated tomogram with its label map and true particle positions: a test bed for
the real-data path (segment, pick, extract, adapt) that can be scored, because everything is known.

Built from the subtomogram simulator's own pieces, not a second physics: class templates
(:func:`~.structures.load_template`), rotation and resampling (:func:`~.geometry.placed_patch`), and the
domain's imaging (:func:`~.writer.image_scene`: Fourier model or tilt series + WBP, CTF, wedge, noise, ice
ramp, gain). What is new here is only the scene: ``particles`` templates drawn from the domain's classes,
placed at random without overlap (bounding spheres plus a two-voxel gap) fully inside a ``shape`` volume.

The imaging models work on cubes, so the tomogram is imaged as a cube of edge ``max(shape)`` (plus the
domain's scene margin) with particles only inside the requested, centred ``shape`` slab, which is then cut
out: a thin slab in a larger reconstruction, as a real sample is. The SNR the domain asks for is therefore
measured over that cube.

Files (written into ``OUT.partial-PID`` and renamed, so ``OUT`` is either complete or absent):
``tomogram.mrc`` (float32, or IMOD unsigned bytes with ``imod_bytes``), ``labels.mrc`` (int8: 0 background,
``k`` = the domain's ``k``-th class), ``particles.star`` (true centres in tomogram pixels, written by
:func:`voxuda.data.picking.write_picks`, rlnClassNumber = label value) and ``tomogram.json`` (what was
simulated, the class names per label value, and the cache key). A second call with the same request reuses
the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from voxuda.atomic import partial_folder
from voxuda.data.errors import DataError
from voxuda.data.mrc import VolumeInfo, atomic_path, write_imod_bytes, write_labels, write_volume
from voxuda.jsonio import read_json
from voxuda.simulate.geometry import paste, placed_patch, random_rotation, zyz_euler
from voxuda.simulate.spec import DomainSpec
from voxuda.simulate.structures import load_template
from voxuda.simulate.writer import _weighted_choice, code_hash, draw_imaging, image_scene

__all__ = [
    "TomogramResult",
    "PlacedParticle",
    "simulate_tomogram",
    "place_particles",
]


#: File names inside the output folder (the tutorial and tests refer to them).
TOMOGRAM_FILE = "tomogram.mrc"
LABELS_FILE = "labels.mrc"
STAR_FILE = "particles.star"
META_FILE = "tomogram.json"

#: Bumped when the files or their meaning change (part of the cache key).
TOMOGRAM_FORMAT = 1

#: Extra clearance between bounding spheres, in voxels: trilinear resampling can put a mask voxel up to one
#: voxel outside a template's bounding radius, so two voxels keep every label voxel to one particle.
_GAP_VOXELS = 2.0
_TRIES_PER_PARTICLE = 200


@dataclass(frozen=True)
class PlacedParticle:
    """One particle of the scene: class, label value, centre (z, y, x, pixels of the tomogram), ZYZ Euler."""

    cls: str
    label: int
    centre_zyx: tuple[float, float, float]
    euler_zyz: tuple[float, float, float]
    voxels: int


@dataclass(frozen=True)
class TomogramResult:
    folder: Path
    tomogram: Path
    labels: Path
    particles_star: Path
    particles: int
    requested: int
    voxel_size: float
    polarity: str
    reused: bool


def place_particles(
    spec: DomainSpec,
    shape: tuple[int, int, int],
    count: int,
    voxel: float,
    rng: np.random.Generator,
    offset: tuple[int, int, int] = (0, 0, 0),
    scene_shape: tuple[int, int, int] | None = None,
    progress: Callable[[], object] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[PlacedParticle]]:
    """Draw ``count`` particles of ``spec``'s classes into a ``shape`` region at ``offset`` of a scene.

    Returns the clean density and int8 class labels of the scene (``scene_shape``, default ``shape``) and
    the particles actually placed, centres relative to the region. A particle that finds no free spot in
    ``_TRIES_PER_PARTICLE`` draws is left out (the caller reports how many were placed).
    """
    scene_shape = scene_shape or shape
    density = np.zeros(scene_shape, np.float32)
    labels = np.zeros(scene_shape, np.int8)
    names = [c for c, _ in spec.classes]
    centres: list[np.ndarray] = []
    radii: list[float] = []
    placed: list[PlacedParticle] = []
    hi = np.asarray(shape, dtype=np.float64)
    for _ in range(count):
        cls = _weighted_choice(rng, spec.classes)
        t = load_template(cls)
        r = t.radius / voxel
        lo_c, hi_c = np.full(3, r + 1.0), hi - r - 1.0
        centre = None
        if np.all(hi_c > lo_c):
            for _try in range(_TRIES_PER_PARTICLE):
                cand = rng.uniform(lo_c, hi_c)
                if not centres or np.all(
                    np.linalg.norm(np.asarray(centres) - cand, axis=1) >= np.asarray(radii) + r + _GAP_VOXELS
                ):
                    centre = cand
                    break
        if centre is not None:
            rot = random_rotation(rng)
            in_scene = centre + np.asarray(offset)
            q = np.round(in_scene).astype(int)
            patch = placed_patch(t.density, t.voxel_size, voxel, rot, in_scene - q)
            mask = patch > t.level
            label = names.index(cls) + 1
            paste(density, patch.astype(np.float32), q)
            paste(labels, (mask * label).astype(np.int8), q)
            centres.append(centre)
            radii.append(r)
            zyx = (float(centre[0]), float(centre[1]), float(centre[2]))
            placed.append(PlacedParticle(cls, label, zyx, zyz_euler(rot), int(mask.sum())))
        if progress is not None:
            progress()
    return density, labels, placed


def _request(
    spec: DomainSpec,
    shape: tuple[int, int, int],
    particles: int,
    voxel_size: float | None,
    imod_bytes: bool,
    seed: int,
) -> dict[str, Any]:
    return {
        "format": TOMOGRAM_FORMAT,
        "domain": asdict(spec),
        "shape_zyx": list(shape),
        "particles_requested": particles,
        "voxel_size_requested": voxel_size,
        "imod_bytes": imod_bytes,
        "seed": seed,
        "code_hash": code_hash(),
    }


def _digest(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]


def _validate(
    spec: DomainSpec,
    shape: tuple[int, int, int],
    particles: int,
    voxel_size: float | None,
    polarity: str | None,
) -> None:
    from voxuda.errors import ConfigError

    if len(shape) != 3 or any(int(s) < 8 for s in shape):
        raise ConfigError(f"--shape: need three sizes Z Y X of at least 8 voxels each, got {list(shape)}")
    if particles < 1:
        raise ConfigError(f"--particles: need a count >= 1, got {particles}")
    if voxel_size is not None and not (voxel_size > 0 and np.isfinite(voxel_size)):
        raise ConfigError(f"--voxel-size: need a positive size in Å, got {voxel_size}")
    if polarity not in (None, "dark", "bright"):
        raise ConfigError(f"--polarity: dark or bright, got {polarity!r}")
    if spec.model not in ("fourier", "projection"):
        raise ConfigError(f"domain {spec.name!r}: unknown simulation model {spec.model!r}")


def simulate_tomogram(
    spec: DomainSpec,
    out: str | os.PathLike[str],
    *,
    shape: tuple[int, int, int] = (64, 128, 128),
    particles: int = 40,
    voxel_size: float | None = None,
    polarity: str | None = None,
    imod_bytes: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> TomogramResult:
    """Simulate one tomogram of domain ``spec`` into folder ``out`` (see the module docstring for files).

    ``voxel_size`` (Å) and ``polarity`` override the domain's voxel-size range and polarity; ``seed`` makes
    the files byte-identical between runs.
    """
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    _validate(spec, shape, particles, voxel_size, polarity)
    if polarity is not None:
        spec = replace(spec, polarity=polarity)
    dest = Path(out).resolve()
    request = _request(spec, shape, particles, voxel_size, imod_bytes, seed)
    key = _digest(request)
    old = _read_meta(dest)
    if old is not None and old.get("key") == key and all((dest / f).is_file() for f in _FILES):
        return _result(dest, old, reused=True)
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and old is None)):
        raise DataError(
            dest,
            "exists and is not a voxuda simulated-tomogram folder",
            "choose an empty or new --out folder",
        )
    with partial_folder(dest) as tmp:
        meta = _simulate_into(tmp, spec, shape, particles, voxel_size, imod_bytes, seed, progress)
        meta.update(request=request, key=key)
        with atomic_path(tmp / META_FILE) as f:
            f.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return _result(dest, meta, reused=False)


_FILES = (TOMOGRAM_FILE, LABELS_FILE, STAR_FILE, META_FILE)


def _simulate_into(
    folder: Path,
    spec: DomainSpec,
    shape: tuple[int, int, int],
    particles: int,
    voxel_size: float | None,
    imod_bytes: bool,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from voxuda.data.picking import Particle, TomogramGeometry, write_picks

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x70B0,)))
    voxel, snr = draw_imaging(spec, rng)
    if voxel_size is not None:
        voxel = float(voxel_size)
    edge = max(shape)
    n = edge + 2 * spec.margin
    z0, y0, x0 = (spec.margin + (edge - s) // 2 for s in shape)
    region = (z0, y0, x0)  # where the slab sits in the scene cube
    with tqdm(
        total=particles + 1, desc=f"simulate tomogram {spec.name}", disable=not progress, unit="step"
    ) as bar:
        density, scene_labels, placed = place_particles(
            spec, shape, particles, voxel, rng, offset=region, scene_shape=(n, n, n), progress=bar.update
        )
        if not placed:  # the imaging models scale noise to the signal, and there is none
            from voxuda.errors import ConfigError

            raise ConfigError(
                f"--shape {' '.join(map(str, shape))}: no particle of domain {spec.name!r} fits at "
                f"{voxel:.2f} Å/px; use a larger --shape or --voxel-size"
            )
        vol, imaging = image_scene(spec, density, voxel, snr, edge, rng)  # the central edge^3 cube
        bar.update()
    cut = tuple(slice((edge - s) // 2, (edge - s) // 2 + s) for s in shape)
    tomo = np.ascontiguousarray(vol[cut], dtype=np.float32)
    labels = np.ascontiguousarray(
        scene_labels[tuple(slice(r, r + s) for r, s in zip(region, shape, strict=True))]
    )
    info = VolumeInfo.isotropic(voxel)
    if imod_bytes:
        write_imod_bytes(folder / TOMOGRAM_FILE, tomo, info)
    else:
        write_volume(folder / TOMOGRAM_FILE, tomo, info)
    write_labels(folder / LABELS_FILE, labels, info)
    picks = [Particle(p.centre_zyx[2], p.centre_zyx[1], p.centre_zyx[0], p.voxels, p.label) for p in placed]
    write_picks(picks, folder / STAR_FILE, TomogramGeometry(Path(TOMOGRAM_FILE).stem, shape, info))
    classes = {str(i): c for i, (c, _w) in enumerate(spec.classes, start=1)}
    return {
        "domain": spec.name,
        "model": spec.model,
        "polarity": spec.polarity,
        "voxel_size": voxel,
        "shape_zyx": list(shape),
        "imod_bytes": imod_bytes,
        "particles_requested": particles,
        "particles": len(placed),
        "classes": classes,
        "class_counts": {c: sum(p.cls == c for p in placed) for c in classes.values()},
        "euler_zyz": [";".join(f"{a:.3f}" for a in p.euler_zyz) for p in placed],  # STAR order
        "imaging": {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in imaging.items()},
        "seed": seed,
        "files": {"tomogram": TOMOGRAM_FILE, "labels": LABELS_FILE, "particles": STAR_FILE},
    }


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        return read_json(folder / META_FILE)
    except (OSError, ValueError):  # missing, unreadable or broken: the folder is rebuilt
        return None


def _result(folder: Path, meta: dict[str, Any], *, reused: bool) -> TomogramResult:
    return TomogramResult(
        folder=folder,
        tomogram=folder / TOMOGRAM_FILE,
        labels=folder / LABELS_FILE,
        particles_star=folder / STAR_FILE,
        particles=int(meta["particles"]),
        requested=int(meta["particles_requested"]),
        voxel_size=float(meta["voxel_size"]),
        polarity=str(meta["polarity"]),
        reused=reused,
    )

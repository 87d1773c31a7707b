"""Write a complete, deterministic, cached UDA benchmark: :func:`simulate_benchmark`.

Determinism: every sample has its own seed derived with ``numpy.random.SeedSequence(seed,
spawn_key=(domain, split, index))``, so results do not depend on worker scheduling; files carry no time
stamps (fixed MRC header label) and floats are written with ``repr``.

Caching and crash safety: output is generated in a hidden temporary folder beside ``out`` and renamed into
place at the end; ``benchmark.json`` (preset, its spec digest and file, seed, code hash, ``"complete":
true``) is written last. A second call with the same preset (name and content), seed and code returns
immediately; anything else found at ``out`` that is recognisably ours (or empty) is regenerated, and a
folder of someone else's files is never deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing as mp
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from voxuda.atomic import partial_folder
from voxuda.data.errors import DataError
from voxuda.data.manifest import REQUIRED_COLUMNS
from voxuda.data.mrc import VolumeInfo, atomic_path, write_labels, write_volume
from voxuda.jsonio import read_json
from voxuda.locks import output_lock
from voxuda.simulate.preset_file import spec_digest
from voxuda.simulate.presets import BenchmarkPreset, DomainSpec, get_preset
from voxuda.simulate.scene import compose_scene
from voxuda.simulate.source_model import FourierModelParams, simulate_fourier
from voxuda.simulate.structures import STRUCTURE_DIR, Template, load_template
from voxuda.simulate.target_model import ProjectionParams, simulate_projection

__all__ = [
    "simulate_benchmark",
    "code_hash",
    "simulate_sample",
    "draw_imaging",
    "image_scene",
    "BENCHMARK_FORMAT",
]

#: Bumped when the folder layout or manifest format changes.
BENCHMARK_FORMAT = 1

_EXTRA_COLUMNS = (
    "snr_measured",
    "model",
    "tilt_min",
    "tilt_max",
    "dose_per_tilt",
    "n_neighbours",
    "neighbours",
    "outlier",
    "euler_zyz",
    "shift_px",
)


#: benchmark.json entries that must all match for a folder to be reused: the preset's name, what it
#: simulates (so editing a preset file, or passing a changed preset object, re-simulates), seed and code.
_CACHE_KEY = ("preset", "spec_digest", "seed", "code_hash")


def code_hash() -> str:
    """Hash of the simulator sources, I/O code and structure maps: a cache key for generated data."""
    here = Path(__file__).resolve().parent
    data = here.parent / "data"
    files = sorted(here.glob("*.py")) + [data / "mrc.py", data / "manifest.py"]
    files += sorted(STRUCTURE_DIR.glob("*.npz"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _weighted_choice(rng: np.random.Generator, items: tuple[tuple[str, float], ...]) -> str:
    w = np.array([x[1] for x in items], dtype=np.float64)
    return items[int(rng.choice(len(items), p=w / w.sum()))][0]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def _uniform(rng: np.random.Generator, rng_range: tuple[float, float]) -> float:
    lo, hi = rng_range
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def _neighbour_templates(spec: DomainSpec, cls: str, rng: np.random.Generator) -> list[Template]:
    """Crowding neighbours of a ``cls`` main particle: their number, then each one's class."""
    n_nb = int(rng.integers(spec.neighbours[0], spec.neighbours[1] + 1))
    pool: tuple[str, ...]
    if spec.same_class_neighbours:
        pool = (cls,)
    else:
        pool = tuple(c for c in spec.neighbour_classes if c != cls) or (cls,)
    return [load_template(str(rng.choice(pool))) for _ in range(n_nb)]


def draw_imaging(spec: DomainSpec, rng: np.random.Generator) -> tuple[float, float]:
    """Voxel size (Å) and nominal SNR of one simulated volume of ``spec``, drawn from its ranges."""
    voxel = _uniform(rng, spec.voxel_size)
    snr = float(rng.choice(spec.snr_choices)) if spec.snr_choices else _log_uniform(rng, *spec.snr)
    return voxel, snr


def image_scene(
    spec: DomainSpec, density: np.ndarray, voxel: float, snr: float, box: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Image a clean cubic scene with ``spec``'s model and return its central ``box`` and imaging metadata.

    The one place where a domain's imaging (CTF, wedge, noise, tilt series, ice ramp, gain) is applied:
    subtomograms (:func:`simulate_sample`) and whole tomograms (:mod:`.tomogram`) both call it. The scene
    is larger than the box by ``(n - box) // 2`` voxels on every side, so that structures cut by the box
    face still image.
    """
    margin = (density.shape[0] - box) // 2
    if spec.model == "fourier":
        params = FourierModelParams(
            snr=snr,
            defocus_um=spec.defocus_um[0],
            tilt_min=spec.tilt_range[0],
            tilt_max=spec.tilt_range[1],
            contrast_sign=1.0 if spec.polarity == "bright" else -1.0,
        )
        res = simulate_fourier(density.astype(np.float64), voxel, params, rng, margin=margin)
        meta = {
            "snr": snr,
            "snr_measured": res.snr_measured,
            "defocus": params.defocus_um,
            "dose_per_tilt": "",
        }
        return res.volume, meta
    if spec.model != "projection":
        raise ValueError(f"unknown simulation model {spec.model!r}")
    pparams = ProjectionParams(
        snr=snr,
        defocus_um=_uniform(rng, spec.defocus_um),
        tilt_min=spec.tilt_range[0],
        tilt_max=spec.tilt_range[1],
        tilt_step=spec.tilt_step,
        amplitude=spec.amplitude,
        bfactor=_uniform(rng, spec.bfactor),
        astigmatism_a=float(rng.uniform(0, spec.astigmatism_a)),
        astigmatism_angle=float(rng.uniform(0, 180)),
        misalign_px=spec.misalign_px,
        contrast_sign=-1.0 if spec.polarity == "dark" else 1.0,
    )
    pres = simulate_projection(density, voxel, box, pparams, rng)
    vol = pres.volume
    noise_std = float((pres.volume - pres.clean).std())
    g = _uniform(rng, spec.gradient)
    if g > 0:
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        ax = (np.arange(box) - (box - 1) / 2) / (box / 2)
        ramp = d[0] * ax[:, None, None] + d[1] * ax[None, :, None] + d[2] * ax[None, None, :]
        vol = vol + (g * noise_std * ramp).astype(np.float32)
    gain = _log_uniform(rng, *spec.gain)
    offset = float(rng.normal()) * noise_std if spec.gain != (1.0, 1.0) else 0.0
    vol = (vol * gain + offset).astype(np.float32)
    meta = {
        "snr": snr,
        "snr_measured": pres.snr_measured,
        "defocus": pparams.defocus_um,
        "dose_per_tilt": pres.dose_per_tilt,
    }
    return vol, meta


def simulate_sample(
    spec: DomainSpec, box: int, seed: int
) -> tuple[np.ndarray, np.ndarray, float, dict[str, Any]]:
    """One subtomogram of ``spec``: volume, label (int8), voxel size, and metadata for the manifest."""
    if spec.model not in ("fourier", "projection"):
        raise ValueError(f"unknown simulation model {spec.model!r}")
    rng = np.random.default_rng(seed)
    cls = _weighted_choice(rng, spec.classes)
    main = load_template(cls)
    meta: dict[str, Any] = {
        "class": cls,
        "model": spec.model,
        "tilt_min": spec.tilt_range[0],
        "tilt_max": spec.tilt_range[1],
    }
    voxel, snr = draw_imaging(spec, rng)
    if spec.model == "fourier":
        # An uncrowded source draws nothing more and images the box alone (the original recipe, byte for
        # byte); a crowded one images a scene with a margin, as the projection model does.
        crowded = spec.neighbours[1] > 0 or spec.outlier_probability > 0
        margin = spec.margin if crowded else 0
        nbs = _neighbour_templates(spec, cls, rng) if spec.neighbours[1] > 0 else []
    else:
        margin = spec.margin
        nbs = _neighbour_templates(spec, cls, rng)
    scene = compose_scene(
        main,
        n=box + 2 * margin,
        box=box,
        voxel=voxel,
        rng=rng,
        neighbours=nbs,
        outlier_probability=spec.outlier_probability,
    )
    vol, imaging = image_scene(spec, scene.density, voxel, snr, box, rng)
    label = scene.mask[margin : margin + box, margin : margin + box, margin : margin + box]
    meta.update(imaging)
    meta.update(
        n_neighbours=len(scene.neighbours),
        neighbours=";".join(scene.neighbours),
        outlier=int(scene.outlier),
        euler_zyz=";".join(f"{a:.3f}" for a in scene.main_euler),
        shift_px=";".join(f"{s:.3f}" for s in scene.main_shift),
    )
    return vol.astype(np.float32), label.astype(np.int8), voxel, meta


def _task(args: tuple[DomainSpec, int, str, int, int, str]) -> dict[str, str]:
    spec, box, split, index, seed, tmp = args
    vol, label, voxel, meta = simulate_sample(spec, box, seed)
    sid = f"{spec.name}-{split}-{index:05d}"
    rel_v = f"{spec.name}/{split}/{sid}.mrc"
    rel_l = f"{spec.name}/{split}/{sid}_label.mrc"
    info = VolumeInfo.isotropic(voxel)
    write_volume(Path(tmp) / rel_v, vol, info)
    write_labels(Path(tmp) / rel_l, label, info)

    def s(x: Any) -> str:
        return repr(float(x)) if isinstance(x, float | np.floating) else str(x)

    rec = {
        "id": sid,
        "split": split,
        "domain": spec.name,
        "class": meta["class"],
        "voxel_size": s(voxel),
        "polarity": spec.polarity,
        "snr": s(meta["snr"]),
        "defocus": s(meta["defocus"]),
        "seed": str(seed),
        "volume": rel_v,
        "label": rel_l,
    }
    rec.update({k: s(meta[k]) for k in _EXTRA_COLUMNS})
    return rec


def _tasks(preset: BenchmarkPreset, seed: int, tmp: Path) -> list[tuple[DomainSpec, int, str, int, int, str]]:
    out = []
    for d, spec in enumerate(preset.domains):
        for s_idx, (split, count) in enumerate(spec.splits):
            (tmp / spec.name / split).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                ss = np.random.SeedSequence(seed, spawn_key=(d, s_idx, i))
                out.append(
                    (spec, preset.box, split, i, int(ss.generate_state(1, dtype=np.uint32)[0]), str(tmp))
                )
    return out


def _run(tasks: list[Any], workers: int, progress: bool, desc: str) -> Iterator[dict[str, str]]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc=desc, disable=not progress, unit="vol")
    try:
        if workers <= 1 or len(tasks) < 64:
            for t in tasks:
                yield _task(t)
                bar.update()
            return
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            for rec in pool.imap(_task, tasks, chunksize=8):
                yield rec
                bar.update()
    finally:
        bar.close()


def _worker_init() -> None:
    with contextlib.suppress(ImportError):  # threadpoolctl is optional: without it BLAS keeps its threads
        import threadpoolctl

        threadpoolctl.threadpool_limits(1)


def _read_meta(out: Path) -> dict[str, Any] | None:
    try:
        return read_json(out / "benchmark.json")
    except (OSError, ValueError):  # missing, unreadable or broken: the dataset is rebuilt
        return None


def _describe(preset: BenchmarkPreset, seed: int, digest: str) -> dict[str, Any]:
    return {
        "format": BENCHMARK_FORMAT,
        "preset": preset.name,
        "preset_file": preset.origin,
        "spec_digest": spec_digest(preset),
        "seed": seed,
        "code_hash": digest,
        "box": preset.box,
        "source_domain": preset.source.name,
        "target_domains": [t.name for t in preset.targets],
        "domains": {
            d.name: {"polarity": d.polarity, "model": d.model, "splits": dict(d.splits)}
            for d in preset.domains
        },
        "spec": [asdict(d) for d in preset.domains],
        "manifest": "manifest.csv",
        "complete": True,
    }


def simulate_benchmark(
    preset: str | BenchmarkPreset,
    out: str | os.PathLike[str],
    seed: int = 0,
    progress: bool = True,
    workers: int = 2,
) -> Path:
    """Generate (or reuse) the benchmark ``preset`` with ``seed`` in folder ``out``; returns ``out``.

    Layout: ``out/manifest.csv``, ``out/benchmark.json`` and ``out/<domain>/<split>/<id>.mrc``
    (+ ``_label.mrc``).
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    dest = Path(out).resolve()
    # one writer per folder; another process simulating the same data is waited for, then its copy reused
    with output_lock(dest, command="voxuda simulate", wait=True):
        return _simulate_locked(p, dest, seed, progress, workers)


def _simulate_locked(p: BenchmarkPreset, dest: Path, seed: int, progress: bool, workers: int) -> Path:
    digest = code_hash()
    meta = _read_meta(dest)
    key = (p.name, spec_digest(p), seed, digest)
    if meta and meta.get("complete") and tuple(meta.get(k) for k in _CACHE_KEY) == key:
        return dest
    foreign = dest.exists() and (
        not dest.is_dir() or (any(dest.iterdir()) and not (dest / "benchmark.json").exists())
    )
    if foreign:
        raise DataError(
            dest, "exists and is not a voxuda benchmark folder", "choose an empty or new --out folder"
        )
    with partial_folder(dest) as tmp:  # published by one rename; partials of killed processes cleaned
        tasks = _tasks(p, seed, tmp)
        records = list(_run(tasks, workers, progress, f"simulate {p.name}"))
        _write_csv(tmp / "manifest.csv", records)
        with atomic_path(tmp / "benchmark.json") as f:
            f.write_text(json.dumps(_describe(p, seed, digest), indent=1, sort_keys=True) + "\n")
    return dest


def _write_csv(path: Path, records: list[dict[str, str]]) -> None:
    import csv
    import io

    cols = list(REQUIRED_COLUMNS) + list(_EXTRA_COLUMNS)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(records)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")

"""Cut subtomograms out of a tomogram and write them as a dataset folder (MRC files + ``manifest.csv``).

Three ways to place the boxes: at picks (RELION 4/5 STAR or CSV, see
:func:`voxuda.data.picking.read_picks`), on a regular grid (``grid=True``, every ``stride`` voxels) or at
``random`` positions (seeded), the last two for an unlabelled target tomogram that has no picks yet. With
``labels`` (a label map of the tomogram, e.g. from PolNet or SHREC) the matching label boxes are cut too
(nearest neighbour, integer values), so a user's own labelled tomogram becomes a source domain without code.

The tomogram is memory-mapped, so only the boxes are read. Each subtomogram keeps the tomogram's voxel size,
and its origin records where it was cut from.

Atomic: everything is written into ``.OUT.partial-PID`` beside ``OUT`` and renamed onto ``OUT`` at the end (as
``voxuda simulate`` does), so a NaN voxel in the second box, a full disk or Ctrl-C leaves nothing under the
final name. An existing ``OUT`` is replaced only if it is an earlier extract (it holds ``extract.json``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxuda.atomic import partial_folder
from voxuda.data.errors import DataError
from voxuda.data.manifest import POLARITIES, ManifestRow, read_manifest, write_manifest
from voxuda.data.mrc import (
    Note,
    Tomogram,
    atomic_path,
    open_tomogram,
    read_header,
    stderr_note,
    write_labels,
    write_volume,
)
from voxuda.data.picking import Pick, TomogramGeometry, read_picks
from voxuda.errors import ConfigError

__all__ = [
    "Pick",
    "read_picks",
    "extract_subtomograms",
    "grid_picks",
    "random_picks",
    "reference_box",
    "BoxCheck",
    "check_box",
    "BOX_TOLERANCE",
    "MARKER",
]

#: relative difference of physical box sizes above which ``extract`` warns (a network trained on boxes of
#: one physical size sees particles at another scale).
BOX_TOLERANCE = 0.10

#: file that marks a folder written by ``voxuda extract`` (its parameters), so a rerun may replace it.
MARKER = "extract.json"


def grid_picks(shape: tuple[int, int, int], box: int, stride: int) -> list[Pick]:
    """Centres of boxes on a regular grid, every ``stride`` voxels, each box wholly inside ``shape``."""
    if stride < 1:
        raise ConfigError(f"--stride {stride}: must be at least 1")
    starts = [range(0, n - box + 1, stride) for n in shape]
    half = box // 2
    return [Pick(float(x + half), float(y + half), float(z + half))
            for z in starts[0] for y in starts[1] for x in starts[2]]


def random_picks(shape: tuple[int, int, int], box: int, count: int, seed: int) -> list[Pick]:
    """``count`` box centres drawn uniformly (seeded) so that each box lies wholly inside ``shape``."""
    if count < 1:
        raise ConfigError(f"--random {count}: must be at least 1")
    rng = np.random.default_rng(seed)
    lo = rng.integers(0, np.asarray(shape) - box + 1, size=(count, 3))
    half = box // 2
    return [Pick(float(x + half), float(y + half), float(z + half)) for z, y, x in lo]


# ------------------------------------------------------------------------------------------- box check


@dataclass(frozen=True)
class BoxCheck:
    """How the physical box compares with a reference dataset's, and the box that would match it."""

    box: int
    voxel_size: float
    reference_angstrom: float
    suggested_box: int

    @property
    def angstrom(self) -> float:
        return self.box * self.voxel_size

    @property
    def relative_difference(self) -> float:
        return abs(self.angstrom / self.reference_angstrom - 1.0)

    @property
    def matches(self) -> bool:
        return self.relative_difference <= BOX_TOLERANCE


def _manifest_path(dataset: Path) -> Path:
    if dataset.is_dir():
        for name in ("manifest.csv", "manifest.json"):
            if (dataset / name).is_file():
                return dataset / name
        raise DataError(dataset, "no manifest.csv or manifest.json inside",
                        "pass a dataset folder or its manifest")
    if not dataset.is_file():
        raise DataError(dataset, "reference dataset not found", "pass a dataset folder or its manifest")
    return dataset


def reference_box(dataset: str | os.PathLike[str], *, sample: int = 64) -> float:
    """Median physical box edge (Å) of a dataset's source rows (all rows if it has no ``source`` domain).

    The edge is each volume's x size times its voxel size (the manifest's, else its header's); at most
    ``sample`` volumes are read (headers only).
    """
    manifest = _manifest_path(Path(dataset))
    rows = read_manifest(manifest)
    chosen = [r for r in rows if r.domain == "source"] or rows
    edges = []
    for row in chosen[:sample]:
        shape, info, _ = read_header(row.volume)
        voxel = row.voxel_size if math.isfinite(row.voxel_size) and row.voxel_size > 0 else info.voxel_size[2]
        edges.append(shape[2] * voxel)
    good = [e for e in edges if math.isfinite(e) and e > 0]
    if not good:
        raise DataError(manifest, "no volume with a positive voxel size", "fix voxel_size in the manifest")
    return float(np.median(good))


def check_box(box: int, voxel_size: float, reference_angstrom: float) -> BoxCheck:
    """Compare ``box`` voxels of ``voxel_size`` Å with a reference edge; the suggestion is the nearest box."""
    suggested = max(1, int(math.floor(reference_angstrom / voxel_size + 0.5)))
    return BoxCheck(box, voxel_size, reference_angstrom, suggested)


# ------------------------------------------------------------------------------------------- label boxes


class _LabelCutter:
    """Label boxes matching tomogram boxes: same grid sliced directly, another grid by nearest neighbour."""

    def __init__(self, labels: Tomogram, tomo_shape: tuple[int, int, int], note: Note | None) -> None:
        self.labels = labels
        self.tomo_shape = tomo_shape
        self.same = labels.shape == tomo_shape
        if not self.same and note is not None:
            note(f"{labels.path}: label map {labels.shape} is on another grid than the tomogram "
                 f"{tomo_shape}; label boxes are taken by nearest neighbour over the same extent")

    def cut(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.same:
            box = tuple(slice(int(x), int(y)) for x, y in zip(a, b, strict=True))
            raw = np.asarray(self.labels.data[box])
        else:
            idx = [np.minimum(((np.arange(x, y) + 0.5) * n_l / n_t).astype(np.int64), n_l - 1)
                   for x, y, n_l, n_t in zip(a, b, self.labels.shape, self.tomo_shape, strict=True)]
            raw = np.asarray(self.labels.data[np.ix_(*idx)])
        finite = raw.dtype.kind != "f" or (np.all(np.isfinite(raw)) and np.array_equal(raw, np.round(raw)))
        if not finite:
            raise DataError(self.labels.path, "label map holds non-integer or NaN values",
                            "write labels as integers (int8/int16)")
        return raw.astype(np.int64)


# ------------------------------------------------------------------------------------------- extraction


def _check_destination(dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise DataError(dest, "exists and is not a folder", "choose a new --out folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MARKER).is_file():
        raise DataError(dest, "exists and is not a folder written by voxuda extract",
                        "choose an empty or new --out folder")


def _cut(tomo: Tomogram, lo: np.ndarray, box: int, inside: bool) -> np.ndarray:
    shape = np.asarray(tomo.shape)
    a, b = np.maximum(lo, 0), np.minimum(lo + box, shape)
    part = tomo.read(tuple(slice(int(x), int(y)) for x, y in zip(a, b, strict=True)))
    if inside:
        return part
    sub = np.full((box, box, box), float(part.mean()), np.float32)
    o = a - lo
    sub[tuple(slice(int(x), int(x) + n) for x, n in zip(o, part.shape, strict=True))] = part
    return sub


def _pad_labels(part: np.ndarray, lo: np.ndarray, a: np.ndarray, box: int) -> np.ndarray:
    if part.shape == (box, box, box):
        return part
    sub = np.zeros((box, box, box), np.int64)  # outside the tomogram: background
    o = a - lo
    sub[tuple(slice(int(x), int(x) + n) for x, n in zip(o, part.shape, strict=True))] = part
    return sub


def _validate(box: int, border: str, polarity: str, sources: Sequence[object]) -> None:
    if border not in ("skip", "pad"):
        raise ConfigError(f"--border {border!r}: use skip or pad")
    if box < 1:
        raise ConfigError(f"--box: box must be at least 1, got {box}")
    if polarity not in POLARITIES or not polarity:
        raise ConfigError(f"--polarity {polarity!r}: use dark or bright")
    given = sum(1 for s in sources if s)
    if given != 1:
        raise ConfigError("give exactly one of PICKS, --grid or --random N (the boxes to cut)")


def extract_subtomograms(
    tomogram: str | os.PathLike[str],
    picks: str | os.PathLike[str] | list[Pick] | None,
    out: str | os.PathLike[str],
    *,
    box: int = 32,
    border: str = "skip",
    domain: str = "target",
    split: str = "test",
    polarity: str = "dark",
    tomogram_name: str | None = None,
    labels: str | os.PathLike[str] | None = None,
    grid: bool = False,
    stride: int | None = None,
    random: int | None = None,
    seed: int = 0,
    voxel_size: float | None = None,
    picks_pixel_size: float | None = None,
    picks_binning: float | None = None,
    match_box_of: str | os.PathLike[str] | None = None,
    progress: bool = False,
    note: Note | None = stderr_note,
) -> Path:
    """Write one MRC per box (``box``^3 voxels, plus ``ID_label.mrc`` with ``labels``), ``manifest.csv`` and
    ``extract.json`` into ``out``; returns the manifest path.

    Boxes come from ``picks`` (a file or a list of :class:`Pick`), ``grid`` (every ``stride`` voxels, default
    ``box``) or ``random`` (that many, seeded by ``seed``); give exactly one. ``border="skip"`` drops pick
    boxes that cross the tomogram edge, ``"pad"`` fills the outside with the mean of the part inside (and
    label 0).
    ``polarity`` is that of the data (``dark`` for ordinary underfocus tomograms). ``voxel_size`` (Å)
    overrides the tomogram header's. ``match_box_of`` (a dataset folder or manifest) warns, with the box to
    use, when the physical box differs from its source boxes by more than :data:`BOX_TOLERANCE`.
    """
    _validate(box, border, polarity, (picks is not None, grid, random is not None))
    if stride is not None and not grid:
        raise ConfigError("--stride sets the step of --grid; add --grid")
    dest = Path(out)
    _check_destination(dest)
    reference = reference_box(match_box_of) if match_box_of is not None else None
    stem = Path(tomogram).stem
    with contextlib.ExitStack() as stack:
        tomo = stack.enter_context(open_tomogram(tomogram, voxel_size=voxel_size, note=note))
        vs = float(tomo.info.voxel_size[2])
        if not all(math.isfinite(v) and v > 0 for v in tomo.info.voxel_size):
            raise DataError(tomogram, f"header pixel size is {tomo.info.voxel_size[2]:g} Å",
                            "pass the real one with --voxel-size ANGSTROM")
        geometry = TomogramGeometry(tomogram_name or stem, tomo.shape, tomo.info)
        if (grid or random is not None) and any(n < box for n in tomo.shape):
            raise DataError(tomogram, f"tomogram {tomo.shape} is smaller than the box {box}",
                            "use a smaller --box")
        if grid:
            plist = grid_picks(tomo.shape, box, stride if stride is not None else box)
        elif random is not None:
            plist = random_picks(tomo.shape, box, random, seed)
        elif isinstance(picks, list):
            plist = picks
        else:
            assert picks is not None
            plist = read_picks(picks, tomogram_name or Path(tomogram).name, geometry=geometry,
                               pixel_size=picks_pixel_size, binning=picks_binning, note=note)
        cutter = None
        if labels is not None:
            label_map = stack.enter_context(
                open_tomogram(labels, voxel_size=vs, refuse_stacks=False, note=note))
            cutter = _LabelCutter(label_map, tomo.shape, note)
        if reference is not None:
            verdict = check_box(box, vs, reference)
            if not verdict.matches and note is not None:
                note(f"warning: box size mismatch: --box {box} x {vs:g} Å = {verdict.angstrom:.0f} Å "
                     f"differs by {100 * verdict.relative_difference:.0f} % from the {reference:.0f} Å "
                     f"boxes of {match_box_of}; particles would appear at another scale. Use --box "
                     f"{verdict.suggested_box} ({verdict.suggested_box * vs:.0f} Å)")
        with partial_folder(dest) as tmp:
            rows = _write_boxes(tomo, plist, tmp, stem=stem, box=box, border=border, cutter=cutter,
                                domain=domain, split=split, polarity=polarity, progress=progress)
            if not rows:
                raise DataError(tomogram, "no pick produced a subtomogram",
                                "check the coordinates' pixel size (--picks-binning) or use --border pad")
            write_manifest(rows, tmp / "manifest.csv")
            params = {"tomogram": str(Path(tomogram).resolve()), "voxel_size": vs, "box": box,
                      "border": border, "boxes": len(rows), "labels": str(Path(labels).resolve()) if labels
                      else None, "placement": "grid" if grid else "random" if random is not None else "picks",
                      "picks": str(Path(picks).resolve()) if isinstance(picks, (str, os.PathLike)) else None,
                      "stride": stride if grid else None, "seed": seed if random is not None else None}
            with atomic_path(tmp / MARKER) as f:
                f.write_text(json.dumps(params, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return dest / "manifest.csv"


def _write_boxes(tomo: Tomogram, plist: Sequence[Pick], folder: Path, *, stem: str, box: int, border: str,
                 cutter: _LabelCutter | None, domain: str, split: str, polarity: str,
                 progress: bool) -> list[ManifestRow]:
    from tqdm.auto import tqdm

    shape = np.asarray(tomo.shape)
    rows: list[ManifestRow] = []
    for i, pk in enumerate(tqdm(plist, desc=f"extract {stem}", unit="box", disable=not progress)):
        lo = np.array([int(math.floor(c)) for c in (pk.z, pk.y, pk.x)]) - box // 2
        inside = bool(np.all(lo >= 0) and np.all(lo + box <= shape))
        if not inside and border == "skip":
            continue
        a, b = np.maximum(lo, 0), np.minimum(lo + box, shape)
        if np.any(b <= a):
            continue
        sid = f"{stem}-{i:05d}"
        info = tomo.info.shifted(tuple(int(v) for v in lo))  # type: ignore[arg-type]
        volume = write_volume(folder / f"{sid}.mrc", _cut(tomo, lo, box, inside), info)
        label_path = None
        if cutter is not None:
            label_box = _pad_labels(cutter.cut(a, b), lo, a, box)
            label_path = write_labels(folder / f"{sid}_label.mrc", label_box, info)
        extra: dict[str, Any] = {"tomogram": str(tomo.path.resolve()), "x": repr(pk.x), "y": repr(pk.y),
                                 "z": repr(pk.z)}
        rows.append(ManifestRow(id=sid, split=split, domain=domain, class_name=str(pk.class_name),
                                voxel_size=float(tomo.info.voxel_size[2]), polarity=polarity, snr=math.nan,
                                defocus=math.nan, seed="", volume=volume, label=label_path, extra=extra))
    return rows

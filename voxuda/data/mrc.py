"""MRC reading and writing on top of :mod:`mrcfile`.

Why a wrapper: cryo-ET users repeatedly lose the pixel size or origin when tools rewrite MRC files, and a
crash mid-write leaves half files that later fail in confusing ways. Here

* every array travels with a :class:`VolumeInfo` (voxel size and origin, numpy (z, y, x) order, Å);
* every write goes to a temporary file in the destination folder and is renamed into place, so readers
  never see a partial file;
* modes 0, 1, 2, 6 and 12 are read and cast (images to float32, labels to int64);
* corrupt, truncated, non-3-D or non-finite files raise :class:`~voxuda.data.errors.DataError` naming
  the file.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from voxuda.atomic import atomic_path  # the one atomic-write helper; re-exported for the data code
from voxuda.data.errors import DataError

__all__ = [
    "VolumeInfo",
    "Tomogram",
    "READ_MODES",
    "read_volume",
    "read_labels",
    "read_header",
    "open_tomogram",
    "write_volume",
    "write_labels",
    "atomic_path",
]

#: MRC modes accepted on read (int8, int16, float32, uint16, float16).
READ_MODES: frozenset[int] = frozenset({0, 1, 2, 6, 12})

# A fixed header label keeps files byte-identical between runs (mrcfile would stamp the current time).
_LABEL = "voxuda"


@dataclass(frozen=True)
class VolumeInfo:
    """Geometry that must travel with every array: voxel size and origin, both (z, y, x) in Å."""

    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def isotropic(cls, voxel: float, origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> VolumeInfo:
        """Isotropic voxel size ``voxel`` Å."""
        v = float(voxel)
        return cls((v, v, v), tuple(float(o) for o in origin))  # type: ignore[arg-type]

    def resized(self, old_shape: tuple[int, ...], new_shape: tuple[int, ...]) -> VolumeInfo:
        """Geometry after resampling ``old_shape`` to ``new_shape`` over the same physical extent."""
        vs = tuple(v * o / n for v, o, n in zip(self.voxel_size, old_shape[-3:], new_shape[-3:], strict=True))
        return VolumeInfo(vs, self.origin)  # type: ignore[arg-type]

    def shifted(self, start_zyx: tuple[int, int, int]) -> VolumeInfo:
        """Geometry of a sub-volume whose first voxel is ``start_zyx`` of this one."""
        org = tuple(o + s * v for o, s, v in zip(self.origin, start_zyx, self.voxel_size, strict=True))
        return VolumeInfo(self.voxel_size, org)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, list[float]]:
        return {"voxel_size": list(self.voxel_size), "origin": list(self.origin)}


@dataclass
class Tomogram:
    """A memory-mapped tomogram: ``data`` is a read-only numpy memmap in the file's own dtype.

    Use as a context manager (or call :meth:`close`); slices are cast with :meth:`read` so that a large
    tomogram is never loaded or converted as a whole.
    """

    path: Path
    data: np.ndarray
    info: VolumeInfo
    mode: int
    _handle: Any = field(repr=False, default=None)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    def read(self, index: Any = Ellipsis) -> np.ndarray:
        """Read ``data[index]`` as float32, checking it is finite."""
        out = np.asarray(self.data[index], dtype=np.float32)
        _check_finite(out, self.path)
        return out

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Tomogram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _info_from(mrc: Any) -> VolumeInfo:
    vs = mrc.voxel_size
    org = mrc.header.origin
    return VolumeInfo((float(vs.z), float(vs.y), float(vs.x)), (float(org.z), float(org.y), float(org.x)))


def _check_finite(arr: np.ndarray, path: Path) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise DataError(path, f"contains {bad} NaN/Inf voxel(s)", "fix or re-export the map before using it")


@contextlib.contextmanager
def _open(path: Path, *, mmap: bool) -> Iterator[Any]:
    if not path.exists():
        raise DataError(path, "file not found", "check the path or the manifest entry")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # mrcfile warns on truncated/odd files; treat as corrupt
            opener = mrcfile.mmap if mmap else mrcfile.open
            handle = opener(path, mode="r", permissive=False)
    except (ValueError, OSError, EOFError, RuntimeWarning, UserWarning) as exc:
        raise DataError(path, f"not a readable MRC file ({exc})", "re-export it as MRC2014") from exc
    try:
        yield handle
    finally:
        handle.close()


def _check_geometry(mrc: Any, path: Path) -> int:
    mode = int(mrc.header.mode)
    if mode not in READ_MODES:
        raise DataError(path, f"unsupported MRC mode {mode}", "convert it to mode 2 (float32)")
    if mrc.data is None or mrc.data.ndim != 3:
        ndim = 0 if mrc.data is None else mrc.data.ndim
        raise DataError(path, f"expected a 3-D volume, got {ndim}-D data", "pass a single 3-D map")
    return mode


def read_header(path: str | os.PathLike[str]) -> tuple[tuple[int, int, int], VolumeInfo, int]:
    """Shape (z, y, x), geometry and mode of an MRC file without reading its voxels."""
    p = Path(path)
    with _open(p, mmap=True) as mrc:
        mode = _check_geometry(mrc, p)
        return tuple(int(s) for s in mrc.data.shape), _info_from(mrc), mode  # type: ignore[return-value]


def read_volume(path: str | os.PathLike[str]) -> tuple[np.ndarray, VolumeInfo]:
    """Read a 3-D image as float32 (any accepted mode) with its geometry."""
    p = Path(path)
    with _open(p, mmap=False) as mrc:
        _check_geometry(mrc, p)
        arr = np.array(mrc.data, dtype=np.float32)
        info = _info_from(mrc)
    _check_finite(arr, p)
    return arr, info


def read_labels(path: str | os.PathLike[str]) -> tuple[np.ndarray, VolumeInfo]:
    """Read a 3-D integer label map as int64; float label files must hold whole numbers."""
    p = Path(path)
    with _open(p, mmap=False) as mrc:
        _check_geometry(mrc, p)
        raw = np.asarray(mrc.data)
        info = _info_from(mrc)
        if raw.dtype.kind == "f":
            raw32 = raw.astype(np.float32)
            _check_finite(raw32, p)
            if not np.array_equal(raw32, np.round(raw32)):
                raise DataError(p, "label map holds non-integer values", "write labels as int8/int16")
        arr = raw.astype(np.int64)
    return arr, info


def open_tomogram(path: str | os.PathLike[str]) -> Tomogram:
    """Memory-map a (large) tomogram; voxels are read lazily through :meth:`Tomogram.read`."""
    p = Path(path)
    cm = _open(p, mmap=True)
    mrc = cm.__enter__()
    try:
        mode = _check_geometry(mrc, p)
        return Tomogram(p, mrc.data, _info_from(mrc), mode, _handle=mrc)
    except BaseException:
        cm.__exit__(None, None, None)
        raise


def _write(path: str | os.PathLike[str], data: np.ndarray, info: VolumeInfo) -> Path:
    final = Path(path)
    if data.ndim != 3:
        raise DataError(final, f"refusing to write {data.ndim}-D data", "only 3-D volumes are written")
    vs = info.voxel_size
    if not all(v > 0 and np.isfinite(v) for v in vs):
        raise DataError(final, f"invalid voxel size {vs}", "pass a positive voxel size in Å")
    with atomic_path(final) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data))
        mrc.voxel_size = (vs[2], vs[1], vs[0])
        oz, oy, ox = info.origin
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = ox, oy, oz
        mrc.header.label[0] = _LABEL
        mrc.header.nlabl = 1
        mrc.update_header_stats()
    return final


def write_volume(path: str | os.PathLike[str], volume: np.ndarray, info: VolumeInfo) -> Path:
    """Write a float32 image atomically, with voxel size and origin set."""
    arr = np.asarray(volume, dtype=np.float32)
    _check_finite(arr, Path(path))
    return _write(path, arr, info)


def write_labels(path: str | os.PathLike[str], labels: np.ndarray, info: VolumeInfo) -> Path:
    """Write an integer label map atomically as int8 (values < 128) or int16."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iub":
        raise DataError(
            Path(path), f"labels must be integers, got {arr.dtype}", "cast labels to int before writing"
        )
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo >= -128 and hi <= 127:
        out = arr.astype(np.int8)
    elif lo >= -32768 and hi <= 32767:
        out = arr.astype(np.int16)
    else:
        raise DataError(Path(path), f"label values {lo}..{hi} do not fit int16", "use fewer label values")
    return _write(path, out, info)

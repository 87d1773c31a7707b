"""MRC reading and writing on top of :mod:`mrcfile`.

Why a wrapper: cryo-ET users repeatedly lose the pixel size or origin when tools rewrite MRC files, and a
crash mid-write leaves half files that later fail in confusing ways. Here

* every array travels with a :class:`VolumeInfo` (voxel size and origin, numpy (z, y, x) order, Å);
* every write goes to a temporary file in the destination folder and is renamed into place, so readers
  never see a partial file;
* modes 0, 1, 2, 6 and 12 are read and cast (images to float32, labels to int64); mode 0 is read as
  *unsigned* bytes when IMOD's stamp says so (``imodStamp`` = 1146047817 at byte 152, the bit of value 1 in
  ``imodFlags`` at byte 156 clear: what ``trimvol -bytes`` and ``newstack -mode 0`` write), as IMOD does;
* files another tool wrote slightly off-standard (trailing bytes after the data, a missing ``MAP `` ID, an
  unknown machine stamp) are read with ``mrcfile``'s permissive mode and a one-line note on stderr;
* corrupt, truncated, non-3-D, zero- or negative-sized or non-finite files raise
  :class:`~voxuda.data.errors.DataError` naming the file;
* :func:`open_tomogram` (the entry point of ``voxuda segment`` and ``voxuda extract``) also refuses image
  stacks (tilt series), takes a ``voxel_size`` that overrides the header and notes a header pixel size
  outside :data:`PLAUSIBLE_VOXEL_SIZE`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

# the one atomic-write implementation and its stale clean-up, re-exported for the data code
from voxuda.atomic import atomic_path
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
    "PLAUSIBLE_VOXEL_SIZE",
    "STACK_SUFFIXES",
    "IMOD_STAMP",
    "write_imod_bytes",
    "stderr_note",
    "stack_reason",
]

#: MRC modes accepted on read (int8, int16, float32, uint16, float16).
READ_MODES: frozenset[int] = frozenset({0, 1, 2, 6, 12})

# A fixed header label keeps files byte-identical between runs (mrcfile would stamp the current time).
_LABEL = "voxuda"

#: IMOD's ``imodStamp`` (header byte 152, "IMOD" as an int32): when present, the bit of value 1 in
#: ``imodFlags`` (byte 156) set means signed bytes; clear, mode 0 holds *unsigned* bytes (``trimvol``,
#: ``newstack -mode 0``).
IMOD_STAMP = 1146047817
_IMOD_STAMP_BYTE = 152
_IMOD_SIGNED_BYTES = 1
#: where the stamp sits inside mrcfile's ``extra2`` header field (header bytes 112..195)
_IMOD_EXTRA2_OFFSET = _IMOD_STAMP_BYTE - 112

#: Header pixel sizes (Å) outside ``(low, high]`` are noted as implausible. Below or at 1 Å: unset headers
#: (mrcfile and IMOD write 1 Å, or 0, when nobody set a size) or super-resolution frames, never a
#: tomogram; above 100 Å: binned beyond any use for particles of 10-30 nm. ``--voxel-size`` overrides.
PLAUSIBLE_VOXEL_SIZE: tuple[float, float] = (1.0, 100.0)

#: File suffixes of image stacks in IMOD/RELION/cryoSPARC practice: tilt series (``.st``, aligned
#: ``.ali``/``.preali``) and 2-D particle stacks (``.mrcs``). A tomogram is ``.mrc`` or ``.rec``.
STACK_SUFFIXES: frozenset[str] = frozenset({".st", ".ali", ".preali", ".mrcs"})

#: Extended-header types that carry one metadata record per image (SerialEM, FEI/Thermo, Agard): a file with
#: one and ``ispg`` 0 is a stack of images straight from the microscope.
_PER_IMAGE_EXTTYP: frozenset[bytes] = frozenset({b"SERI", b"FEI1", b"FEI2", b"AGAR"})

Note = Callable[[str], object]


def stderr_note(message: str) -> None:
    """Print one ``voxuda: note:`` line on stderr (the CLI's convention for things the user should know).

    A message starting with ``warning:`` is printed as ``voxuda: warning: ...`` (likely wrong results).
    """
    text = " ".join(message.split())
    kind, sep, rest = text.partition(": ")
    if kind == "warning" and sep:
        print(f"voxuda: warning: {rest}", file=sys.stderr)
    else:
        print(f"voxuda: note: {text}", file=sys.stderr)


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


def _header_dims(path: Path) -> tuple[int, int, int]:
    """``(nx, ny, nz)`` from the raw header, before ``mrcfile`` maps a negative or empty data block."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", header_only=True, permissive=True) as mrc:
                hdr = mrc.header
                if hdr is None:
                    raise ValueError("no MRC header")
                return int(hdr.nx), int(hdr.ny), int(hdr.nz)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(path, f"not a readable MRC file ({exc})", "re-export it as MRC2014") from exc


_TRAILING = "larger than expected"


@contextlib.contextmanager
def _open(path: Path, *, mmap: bool, note: Note | None = stderr_note) -> Iterator[Any]:
    """Open strictly; retry with ``mrcfile``'s permissive mode (and one note) for off-standard headers.

    Trailing bytes after the data block are accepted with a note (some writers pad files); a missing ``MAP``
    ID or an unknown machine stamp is read permissively with a note; anything that leaves no data (truncated
    files) or that fails even permissively is a :class:`DataError`.
    """
    if not path.exists():
        raise DataError(path, "file not found", "check the path or the manifest entry")
    dims = _header_dims(path)
    if any(n <= 0 for n in dims):
        raise DataError(
            path, f"header dimensions (nx, ny, nz) = {dims}: {'zero' if min(dims) == 0 else 'negative'} "
            "size, no voxels to read", "re-export the map; the header is damaged or the file is empty"
        )
    opener = mrcfile.mmap if mmap else mrcfile.open
    handle = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            handle = opener(path, mode="r", permissive=False)
        # mrcfile reports header problems as RuntimeWarning; a library's deprecation notice raised while it
        # reads (numpy 2.5 deprecates a call mrcfile 1.5 makes) says nothing about the file
        problems = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
        odd = [m for m in problems if _TRAILING not in m]
        if odd:
            raise ValueError("; ".join(odd))
        if problems and note is not None:
            note(f"{path}: {problems[0]}; the extra bytes after the data are ignored")
    except (ValueError, OSError, EOFError, OverflowError) as exc:
        if handle is not None:
            handle.close()
        handle = _open_permissive(path, opener, exc, note)
    try:
        yield handle
    finally:
        handle.close()


def _open_permissive(path: Path, opener: Any, strict_error: BaseException, note: Note | None) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            handle = opener(path, mode="r", permissive=True)
    except (ValueError, OSError, EOFError, OverflowError) as exc:
        raise DataError(path, f"not a readable MRC file ({exc})", "re-export it as MRC2014") from exc
    if handle.data is None or handle.header is None:
        handle.close()
        raise DataError(
            path, f"not a readable MRC file ({strict_error}); the data block is missing or truncated",
            "re-export it as MRC2014",
        )
    if note is not None:
        note(f"{path}: {strict_error}; read with mrcfile's permissive mode (check the result)")
    return handle


def _imod_unsigned(mrc: Any) -> bool:
    """True for mode 0 written by IMOD with unsigned bytes (stamp present, signed flag clear)."""
    hdr = mrc.header
    if int(hdr.mode) != 0:
        return False
    raw = hdr.tobytes()
    int32 = hdr.dtype["nx"]  # the file's own byte order
    stamp, flags = (int(v) for v in np.frombuffer(raw[_IMOD_STAMP_BYTE:_IMOD_STAMP_BYTE + 8], dtype=int32))
    return stamp == IMOD_STAMP and not flags & _IMOD_SIGNED_BYTES


def _voxels(mrc: Any) -> np.ndarray:
    """The data block with the dtype its writer meant (IMOD unsigned bytes viewed as uint8)."""
    data = mrc.data
    return data.view(np.uint8) if _imod_unsigned(mrc) else data


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
    with _open(p, mmap=True, note=None) as mrc:
        mode = _check_geometry(mrc, p)
        return tuple(int(s) for s in mrc.data.shape), _info_from(mrc), mode  # type: ignore[return-value]


def read_volume(path: str | os.PathLike[str]) -> tuple[np.ndarray, VolumeInfo]:
    """Read a 3-D image as float32 (any accepted mode) with its geometry."""
    p = Path(path)
    with _open(p, mmap=False) as mrc:
        _check_geometry(mrc, p)
        arr = np.array(_voxels(mrc), dtype=np.float32)
        info = _info_from(mrc)
    _check_finite(arr, p)
    return arr, info


def read_labels(path: str | os.PathLike[str]) -> tuple[np.ndarray, VolumeInfo]:
    """Read a 3-D integer label map as int64; float label files must hold whole numbers."""
    p = Path(path)
    with _open(p, mmap=False) as mrc:
        _check_geometry(mrc, p)
        raw = np.asarray(_voxels(mrc))
        info = _info_from(mrc)
        if raw.dtype.kind == "f":
            raw32 = raw.astype(np.float32)
            _check_finite(raw32, p)
            if not np.array_equal(raw32, np.round(raw32)):
                raise DataError(p, "label map holds non-integer values", "write labels as int8/int16")
        arr = raw.astype(np.int64)
    return arr, info


def stack_reason(path: Path, mrc: Any) -> str | None:
    """Why ``mrc`` looks like a stack of 2-D images (a tilt series) rather than a tomogram, or ``None``.

    MRC2014 marks image stacks with ``ispg`` 0, but many tomograms written by older IMOD versions carry
    ``ispg`` 0 too, so ``ispg`` 0 alone is not refused; it is refused together with a per-image extended
    header (SerialEM, FEI) or a tilt-angle file beside it (``X.tlt``/``X.rawtlt``) with one angle per section.
    """
    if path.suffix.lower() in STACK_SUFFIXES:
        return f"the extension {path.suffix} is that of an image stack (tilt series)"
    hdr = mrc.header
    if int(hdr.ispg) != 0:
        return None
    nz = int(hdr.nz)
    exttyp = bytes(hdr.exttyp)
    if int(hdr.nsymbt) > 0 and exttyp in _PER_IMAGE_EXTTYP:
        return f"ispg 0 (image stack) with a per-image {exttyp.decode()} extended header"
    for suffix in (".tlt", ".rawtlt"):
        angles = path.with_suffix(suffix)
        if angles.is_file():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                count = sum(1 for line in angles.read_text().splitlines() if line.strip())
                if count == nz:
                    return f"ispg 0 (image stack) and nz = {nz} = the tilt angles in {angles.name}"
    return None


def _check_voxel_size(path: Path, info: VolumeInfo, note: Note | None) -> None:
    low, high = PLAUSIBLE_VOXEL_SIZE
    bad = [v for v in info.voxel_size if not (math.isfinite(v) and low < v <= high)]
    if bad and note is not None:
        note(f"warning: {path}: header pixel size {info.voxel_size[2]:g} Å is implausible for a tomogram "
             f"(expected {low:g} < size <= {high:g} Å; unset headers say 0 or 1); pass --voxel-size ANGSTROM")


def open_tomogram(
    path: str | os.PathLike[str],
    *,
    voxel_size: float | None = None,
    refuse_stacks: bool = True,
    note: Note | None = stderr_note,
) -> Tomogram:
    """Memory-map a (large) tomogram; voxels are read lazily through :meth:`Tomogram.read`.

    ``voxel_size`` (Å, isotropic) replaces the header's, which is otherwise checked against
    :data:`PLAUSIBLE_VOXEL_SIZE` with a note. Image stacks (see :func:`stack_reason`) are refused unless
    ``refuse_stacks`` is false.
    """
    p = Path(path)
    if voxel_size is not None and not (math.isfinite(voxel_size) and voxel_size > 0):
        raise DataError(p, f"--voxel-size {voxel_size} is not a positive number", "pass the pixel size in Å")
    cm = _open(p, mmap=True, note=note)
    mrc = cm.__enter__()
    try:
        mode = _check_geometry(mrc, p)
        if refuse_stacks and (why := stack_reason(p, mrc)) is not None:
            raise DataError(p, f"looks like a tilt series, not a tomogram: {why}",
                            "reconstruct it first and pass the tomogram (.mrc/.rec)")
        info = _info_from(mrc)
        if voxel_size is not None:
            info = VolumeInfo.isotropic(voxel_size, info.origin)
        else:
            _check_voxel_size(p, info, note)
        return Tomogram(p, _voxels(mrc), info, mode, _handle=mrc)
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


def write_imod_bytes(path: str | os.PathLike[str], volume: np.ndarray, info: VolumeInfo) -> Path:
    """Write ``volume`` linearly scaled to 0..255 as IMOD unsigned bytes (mode 0, IMOD stamp, flags clear).

    The 0.01 and 99.99 percentiles map to 0 and 255 (a few extreme voxels saturate), the usual choice of
    byte-scaling tools; mrcfile knows only signed mode 0, so the bytes are written through an int8 view and
    the header's statistics and IMOD fields are set by hand.
    """
    final = Path(path)
    lo, hi = (float(v) for v in np.percentile(volume, [0.01, 99.99]))
    scaled = np.clip(np.round((volume - lo) / max(hi - lo, 1e-12) * 255.0), 0, 255).astype(np.uint8)
    vs = info.voxel_size
    with atomic_path(final) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(scaled).view(np.int8))
        mrc.voxel_size = (vs[2], vs[1], vs[0])
        oz, oy, ox = info.origin
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = ox, oy, oz
        mrc.header.label[0] = "voxuda"
        mrc.header.nlabl = 1
        mrc.header.dmin, mrc.header.dmax = float(scaled.min()), float(scaled.max())
        mrc.header.dmean, mrc.header.rms = float(scaled.mean()), float(scaled.std())
        extra = bytearray(mrc.header.extra2.tobytes())
        stamp = np.array([IMOD_STAMP, 0], dtype="<i4").tobytes()  # imodStamp, imodFlags: signed bit clear
        extra[_IMOD_EXTRA2_OFFSET : _IMOD_EXTRA2_OFFSET + 8] = stamp
        mrc.header.extra2 = np.frombuffer(bytes(extra), dtype=mrc.header.extra2.dtype)
    return final

"""Streaming, atomic output of segmentation results: completed z-planes go straight to disk.

Why not ``mrcfile.new`` + ``set_data``: that needs the whole volume in memory. Here the MRC header is written
first (the data block is left sparse), each finished band of planes is written at its file offset with
``os.pwrite`` (so written pages count against the page cache, not against this process), and the header
statistics (min, max, mean, rms) that ``mrcfile.validate`` checks are accumulated on the way and set at the
end.

Every file is written under a temporary name beside its destination and renamed into place only when the
whole segmentation succeeded; on any error (or Ctrl-C) the temporary files are deleted, so a crash never
leaves a half-written label map that later looks valid.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import mrcfile
import numpy as np
from numpy.typing import DTypeLike

from voxuda.atomic import temp_path
from voxuda.data.mrc import VolumeInfo
from voxuda.segment.source import linear_taps, resize_planes

__all__ = ["PlaneSink", "MRCPlaneWriter", "SegmentationSink", "ResampleSink", "check_int8_classes",
           "temp_path_for"]

_LABEL = "voxuda segment"


def temp_path_for(final: Path) -> Path:
    """A hidden temporary name in the destination folder (same file system, so the rename is atomic), named
    with this PID so that the next run can delete it if this one is killed (:mod:`voxuda.atomic`)."""
    return temp_path(final)


class MRCPlaneWriter:
    """Write a 3-D MRC of ``shape`` and ``dtype`` plane band by plane band, then publish it atomically."""

    def __init__(self, path: str | os.PathLike[str], shape: tuple[int, int, int], dtype: DTypeLike,
                 info: VolumeInfo) -> None:
        self.final = Path(path)
        self.tmp = temp_path_for(self.final)
        self.shape = shape
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.info = info
        self._fd: int | None = None
        self._next = 0
        self._stats = [np.inf, -np.inf, 0.0, 0.0]  # min, max, sum, sum of squares (float64)
        mode = {np.dtype(np.int8): 0, np.dtype(np.float32): 2}[np.dtype(dtype)]
        with mrcfile.new_mmap(self.tmp, shape=shape, mrc_mode=mode, overwrite=True) as mrc:
            vz, vy, vx = info.voxel_size
            mrc.voxel_size = (vx, vy, vz)
            oz, oy, ox = info.origin
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = ox, oy, oz
            mrc.header.label[0] = _LABEL
            mrc.header.nlabl = 1
            self._offset = int(mrc.header.nbytes + mrc.extended_header.nbytes)
        self._fd = os.open(self.tmp, os.O_WRONLY)

    def write(self, z0: int, planes: np.ndarray) -> None:
        """Write planes ``z0 .. z0 + len(planes)``; bands must arrive in order, without gaps."""
        if z0 != self._next:
            raise RuntimeError(f"planes must be written in order: expected z={self._next}, got {z0}")
        if planes.shape[1:] != self.shape[1:]:
            raise RuntimeError(f"plane shape {planes.shape[1:]} differs from the output's {self.shape[1:]}")
        data = np.ascontiguousarray(planes, dtype=self.dtype)
        plane_bytes = self.shape[1] * self.shape[2] * self.dtype.itemsize
        view = data.reshape(-1).view(np.uint8).data  # a memoryview of the bytes, no copy
        offset = self._offset + z0 * plane_bytes
        written = 0
        while written < len(view):  # pwrite may write less than asked for
            assert self._fd is not None
            written += os.pwrite(self._fd, view[written:], offset + written)
        values = data.astype(np.float64, copy=False)
        s = self._stats
        s[0] = min(s[0], float(values.min()))
        s[1] = max(s[1], float(values.max()))
        s[2] += float(values.sum())
        s[3] += float(np.square(values).sum())
        self._next = z0 + len(planes)

    def commit(self) -> Path:
        """Set the header statistics, flush to disk and rename onto the destination."""
        if self._next != self.shape[0]:
            raise RuntimeError(f"only {self._next} of {self.shape[0]} planes were written")
        self._close_fd(sync=True)
        n = float(np.prod(self.shape))
        lo, hi, total, squares = self._stats
        mean = total / n
        std = float(np.sqrt(max(squares / n - mean * mean, 0.0)))
        with mrcfile.mmap(self.tmp, mode="r+") as mrc:
            mrc.header.dmin, mrc.header.dmax = lo, hi
            mrc.header.dmean, mrc.header.rms = mean, std
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        """Delete the temporary file (idempotent)."""
        self._close_fd(sync=False)
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()

    def _close_fd(self, sync: bool) -> None:
        if self._fd is not None:
            try:
                if sync:
                    os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None


class PlaneSink(Protocol):
    """Receives finished class-probability planes ``(K, n, H, W)`` in z order."""

    def put(self, z0: int, probs: np.ndarray) -> None: ...

    def finish(self) -> None: ...


def check_int8_classes(probs: np.ndarray) -> None:
    """Label maps are int8 MRCs: refuse class probabilities ``(K, ...)`` with more classes than fit."""
    if probs.shape[0] > 127:
        raise ValueError(f"{probs.shape[0]} classes do not fit an int8 label map (at most 127)")


class SegmentationSink:
    """Turn class probabilities into an int8 label map (argmax) and optionally a float32 foreground map.

    The foreground probability is ``1 - P(background)``: for two classes that is ``P(class 1)``, for more it
    is the probability that the voxel belongs to any macromolecule class.
    """

    def __init__(self, labels: MRCPlaneWriter, probabilities: MRCPlaneWriter | None) -> None:
        self.labels = labels
        self.probabilities = probabilities

    def put(self, z0: int, probs: np.ndarray) -> None:
        check_int8_classes(probs)
        self.labels.write(z0, probs.argmax(axis=0).astype(np.int8))
        if self.probabilities is not None:
            self.probabilities.write(z0, (1.0 - probs[0]).astype(np.float32))

    def finish(self) -> None:
        pass


class ResampleSink:
    """Resample working-grid probability planes back onto the tomogram's own grid, streaming in z.

    Each incoming plane is resized in-plane right away; an output plane is emitted as soon as both working
    planes it interpolates between have arrived (the same separable trilinear rule as the input side).
    """

    def __init__(self, downstream: PlaneSink, working_depth: int, shape: tuple[int, int, int]) -> None:
        self.downstream = downstream
        self.shape = shape
        self._i0, self._i1, self._w1 = linear_taps(shape[0], working_depth)
        self._planes: OrderedDict[int, np.ndarray] = OrderedDict()
        self._next_out = 0
        self._received = 0

    def put(self, z0: int, probs: np.ndarray) -> None:
        for k in range(probs.shape[1]):
            self._planes[z0 + k] = resize_planes(probs[:, k], self.shape[1:])
        self._received = z0 + probs.shape[1]
        self._emit()

    def _emit(self) -> None:
        out = []
        while self._next_out < self.shape[0] and int(self._i1[self._next_out]) < self._received:
            z = self._next_out
            a = self._planes[int(self._i0[z])]
            b = self._planes[int(self._i1[z])]
            w = self._w1[z]
            out.append(a + w * (b - a) if w else a)
            self._next_out += 1
        if out:
            first = self._next_out - len(out)
            self.downstream.put(first, np.stack(out, axis=1))
        keep_from = int(self._i0[self._next_out]) if self._next_out < self.shape[0] else self._received
        for key in [k for k in self._planes if k < keep_from]:
            del self._planes[key]

    def finish(self) -> None:
        if self._next_out != self.shape[0]:
            raise RuntimeError(f"resampling emitted {self._next_out} of {self.shape[0]} planes")
        self.downstream.finish()

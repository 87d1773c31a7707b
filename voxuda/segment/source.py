"""Plane-wise access to a tomogram, optionally resampled, without ever holding it whole in memory.

Why planes: the sliding window walks the volume in z, so it only ever needs a band of ``patch`` consecutive
z-planes. :class:`MRCSource` reads such bands from the memory-mapped file and then drops the file pages from
the process (``madvise(MADV_DONTNEED)``): without that, every page read through a memory map stays counted in
the resident set until the whole map is closed, and a 10 GB tomogram would look like a 10 GB process.

:class:`ResampledSource` presents a tomogram on another grid (a model trained at another voxel size).
Trilinear interpolation with ``align_corners=False`` is separable, so each output plane is a linear blend of
two input planes each resized bilinearly in-plane; this equals ``F.interpolate(mode="trilinear")`` of the
whole volume (the tests check it) while touching two input planes at a time.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from collections import OrderedDict
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from voxuda.data.mrc import Tomogram, VolumeInfo, open_tomogram

__all__ = ["PlaneSource", "MRCSource", "ArraySource", "ResampledSource", "linear_taps", "resize_planes"]


class PlaneSource(Protocol):
    """A 3-D float volume readable by bands of z-planes."""

    shape: tuple[int, int, int]

    def read_planes(self, z0: int, z1: int) -> np.ndarray:
        """Planes ``z0 <= z < z1`` as float32 ``(z1 - z0, H, W)``."""
        ...

    def release(self) -> None:
        """Give back memory held for planes already read (a hint; may do nothing)."""
        ...


class ArraySource:
    """An in-memory array as a :class:`PlaneSource` (tests, small volumes)."""

    def __init__(self, array: np.ndarray) -> None:
        if array.ndim != 3:
            raise ValueError(f"expected a 3-D array, got shape {array.shape}")
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)

    def read_planes(self, z0: int, z1: int) -> np.ndarray:
        return np.asarray(self.array[z0:z1], dtype=np.float32)

    def release(self) -> None:
        pass


def _find_mmap(array: np.ndarray) -> mmap.mmap | None:
    """The ``mmap`` object behind a numpy memmap (or a view of one), if any."""
    node: object = array
    for _ in range(8):
        if isinstance(node, mmap.mmap):
            return node
        candidate = getattr(node, "_mmap", None)
        if isinstance(candidate, mmap.mmap):
            return candidate
        node = getattr(node, "base", None)
        if node is None:
            return None
    return None


class MRCSource:
    """A memory-mapped MRC tomogram (any readable mode, cast to float32 plane band by plane band)."""

    def __init__(self, tomogram: Tomogram) -> None:
        self.tomogram = tomogram
        self.shape = tomogram.shape
        self._mmap = _find_mmap(tomogram.data)

    @classmethod
    def open(cls, path: str | os.PathLike[str], voxel_size: float | None = None) -> MRCSource:
        """``voxel_size`` (Å) overrides the header's (``--voxel-size``)."""
        return cls(open_tomogram(path, voxel_size=voxel_size))

    @property
    def info(self) -> VolumeInfo:
        return self.tomogram.info

    def read_planes(self, z0: int, z1: int) -> np.ndarray:
        return self.tomogram.read(slice(z0, z1))

    def release(self) -> None:
        if self._mmap is not None and hasattr(self._mmap, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):
                self._mmap.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        self._mmap = None
        self.tomogram.close()


def linear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i0, i1, w1)`` such that output ``k`` = ``(1 - w1) * in[i0] + w1 * in[i1]``.

    The same source coordinate as PyTorch's linear interpolation with ``align_corners=False`` and an explicit
    output size: ``src = max((k + 0.5) * in/out - 0.5, 0)``.
    """
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, w1


def resize_planes(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (``align_corners=False``) in-plane resize of ``(..., H, W)`` float32 planes to ``size``."""
    if tuple(planes.shape[-2:]) == tuple(size):
        return np.asarray(planes, dtype=np.float32)
    lead = planes.shape[:-2]
    x = torch.from_numpy(np.array(planes, dtype=np.float32)).reshape(1, -1, *planes.shape[-2:])
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return y.reshape(*lead, *size).numpy()


class ResampledSource:
    """Another :class:`PlaneSource` seen on a grid of ``shape`` over the same physical extent."""

    def __init__(self, inner: PlaneSource, shape: tuple[int, int, int], cache_planes: int = 8) -> None:
        if any(s < 1 for s in shape):
            raise ValueError(f"resampled shape must be positive, got {shape}")
        self.inner = inner
        self.shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self._taps = linear_taps(self.shape[0], inner.shape[0])
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_planes = max(2, cache_planes)

    def _inner_plane(self, index: int) -> np.ndarray:
        plane = self._cache.get(index)
        if plane is None:
            plane = resize_planes(self.inner.read_planes(index, index + 1)[0], self.shape[1:])
            self._cache[index] = plane
            while len(self._cache) > self._cache_planes:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return plane

    def read_planes(self, z0: int, z1: int) -> np.ndarray:
        i0, i1, w1 = self._taps
        out = np.empty((z1 - z0, *self.shape[1:]), dtype=np.float32)
        for k, z in enumerate(range(z0, z1)):
            a = self._inner_plane(int(i0[z]))
            b = self._inner_plane(int(i1[z]))
            out[k] = a + w1[z] * (b - a) if w1[z] else a
        return out

    def release(self) -> None:
        self.inner.release()


def resampled_shape(shape: tuple[int, int, int], voxel_size: tuple[float, float, float], target: float
                    ) -> tuple[int, int, int]:
    """The grid of ``shape`` at ``voxel_size`` (z, y, x) Å seen at an isotropic ``target`` Å voxel."""
    return tuple(max(1, int(math.floor(n * v / target + 0.5))) for n, v in zip(shape, voxel_size))  # type: ignore[return-value]

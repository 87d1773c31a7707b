"""Whole-tomogram filtering in chunks with a halo, so memory stays bounded by the chunk size.

Each chunk is read with a halo, filtered as an independent volume, and only its core is written back.
The halo makes the core exact: an output voxel depends on inputs within ``radius`` (classic filter) or
``radius + reach`` (improved filter, whose guide stencil reaches ``reach`` voxels further).  The filter's
replicate border is applied at the edge of every chunk read, but the halo is clipped only at the true
volume border, so replicate values only ever influence kept voxels at real borders, as in the unchunked
filter.  Chunked and unchunked results therefore agree to the last bit on the torch and numba backends
(tested).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from voxuda.ops._validate import make_params
from voxuda.ops.backends import BackendChoice
from voxuda.ops.bilateral import bilateral3d, improved_bilateral3d
from voxuda.ops.guides import GUIDE_REACH, GUIDES


def _check_volume(volume: Any, name: str = "volume") -> None:
    if not isinstance(volume, np.ndarray) or volume.ndim != 3:
        raise ValueError(f"{name} must be a 3D numpy array or memmap (D, H, W), got {type(volume).__name__}"
                         f" with shape {getattr(volume, 'shape', None)}")
    if not (np.issubdtype(volume.dtype, np.floating) or np.issubdtype(volume.dtype, np.integer)):
        raise ValueError(f"{name} must have a real dtype, got {volume.dtype}")


def _check_chunk(chunk: Any) -> tuple[int, int, int]:
    if len(chunk) != 3 or any(isinstance(c, bool) or int(c) != c or c < 1 for c in chunk):
        raise ValueError(f"chunk must be three positive ints (z, y, x), got {chunk!r}")
    return tuple(int(c) for c in chunk)  # type: ignore[return-value]


def _work_dtype(volume: np.ndarray) -> np.dtype:
    """float64 stays float64; float32 and integer tomograms (int8/int16 MRC) are filtered in float32."""
    return np.dtype(np.float64) if volume.dtype == np.float64 else np.dtype(np.float32)


def _choice(backend: str | BackendChoice) -> BackendChoice:
    """One choice for all chunks of a call: the backend is resolved once per chunk shape, not per chunk
    (a named backend that is unknown or unavailable fails here, before the volume is touched)."""
    return backend if isinstance(backend, BackendChoice) else BackendChoice(backend)


def _run_chunked(
    volume: np.ndarray,
    chunk: tuple[int, int, int],
    halo: int,
    filt: Callable[[torch.Tensor, tuple[slice, ...]], torch.Tensor],
    out: np.ndarray | None,
    device: str | torch.device,
) -> np.ndarray:
    dtype = _work_dtype(volume)
    if out is None:
        out = np.empty(volume.shape, dtype=dtype)
    elif out.shape != volume.shape:
        raise ValueError(f"out has shape {out.shape}, expected {volume.shape}")
    starts = [range(0, n, c) for n, c in zip(volume.shape, chunk)]
    for s in itertools.product(*starts):
        core = tuple(slice(a, min(a + c, n)) for a, c, n in zip(s, chunk, volume.shape))
        read = tuple(
            slice(max(0, sl.start - halo), min(n, sl.stop + halo)) for sl, n in zip(core, volume.shape)
        )
        block = torch.from_numpy(np.ascontiguousarray(volume[read], dtype=dtype)).to(device)
        res = filt(block, read)
        keep = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(core, read))
        out[core] = res[keep].cpu().numpy()
    return out


def bilateral3d_chunked(
    volume: np.ndarray,
    *,
    radius: int,
    sigma_spatial: float,
    sigma_range: float,
    guide: np.ndarray | None = None,
    chunk: tuple[int, int, int] = (64, 256, 256),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    backend: str | BackendChoice = "auto",
    device: str | torch.device = "cpu",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`voxuda.ops.bilateral3d` on a (D, H, W) array/memmap, ``chunk`` voxels at a time (halo radius).

    ``guide`` may be (D, H, W) or (G, D, H, W) and is chunked alongside.  ``out`` may be a preallocated
    array or writable memmap of the volume's shape; ``device`` is where each chunk is filtered.
    """
    _check_volume(volume)
    ch = _check_chunk(chunk)
    make_params(radius, sigma_spatial, sigma_range, spacing)  # fail before touching the volume
    if guide is not None and (
        not isinstance(guide, np.ndarray) or guide.ndim not in (3, 4) or guide.shape[-3:] != volume.shape
    ):
        raise ValueError(
            f"guide must be a numpy array (D, H, W) or (G, D, H, W) matching volume "
            f"{volume.shape}, got {getattr(guide, 'shape', type(guide).__name__)}"
        )
    dtype = _work_dtype(volume)
    choice = _choice(backend)

    def filt(block: torch.Tensor, read: tuple[slice, ...]) -> torch.Tensor:
        g = None
        if guide is not None:
            index: tuple[Any, ...] = (Ellipsis, *read)  # the block's region, leading guide axes whole
            sub = guide[index]
            g = torch.from_numpy(np.ascontiguousarray(sub, dtype=dtype)).to(block.device)
        return bilateral3d(block, radius=radius, sigma_spatial=sigma_spatial, sigma_range=sigma_range,
                           guide=g, spacing=spacing, backend=choice)

    return _run_chunked(volume, ch, int(radius), filt, out, device)


def improved_bilateral3d_chunked(
    volume: np.ndarray,
    *,
    radius: int = 1,
    sigma_spatial: float = 120.0,
    sigma_range: float = 1.2,
    guide: str = "laplacian_gradient",
    chunk: tuple[int, int, int] = (64, 256, 256),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    backend: str | BackendChoice = "auto",
    device: str | torch.device = "cpu",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`voxuda.ops.improved_bilateral3d` in chunks; halo = radius + the guide stencil's reach."""
    _check_volume(volume)
    ch = _check_chunk(chunk)
    if guide not in GUIDES:
        raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}")
    make_params(radius, sigma_spatial, sigma_range, spacing)
    choice = _choice(backend)

    def filt(block: torch.Tensor, read: tuple[slice, ...]) -> torch.Tensor:
        return improved_bilateral3d(block, radius=radius, sigma_spatial=sigma_spatial,
                                    sigma_range=sigma_range, guide=guide, spacing=spacing, backend=choice)

    return _run_chunked(volume, ch, int(radius) + GUIDE_REACH[guide], filt, out, device)

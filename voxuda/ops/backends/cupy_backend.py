"""CUDA backend: the RawKernel in ``voxuda/ops/kernels/bilateral3d.cu``, launched through CuPy.

Inputs are torch CUDA tensors shared with CuPy through DLPack (no copies), and the kernel runs on torch's
current stream.  The module compiles once per process (cached).  The host side that sizes the launch
(:func:`launch_config`) is plain Python so the CPU shim in the tests exercises the same tiling decisions.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import attrs
import numpy as np
import torch

from voxuda.ops.backends.base import FilterParams
from voxuda.ops.kernels import kernel_source

CB = 4  # VOXUDA_CB in the .cu: channels of x per pass
MAXG = 8  # VOXUDA_MAXG in the .cu: most guide channels
MAX_SMEM = 48 * 1024  # dynamic shared memory available without the opt-in attribute on every sm_70+
MAX_GRID_Z = 65535
KERNEL_NAMES = {torch.float32: "bilateral3d_f32", torch.float64: "bilateral3d_f64"}
# Candidate block shapes (x, y, z) and z-voxels per thread, best first: wide in x for coalesced loads,
# several z per thread to amortise the halo.
_BLOCKS = ((32, 8, 1), (32, 4, 1), (16, 4, 1), (8, 4, 1), (4, 4, 1), (2, 2, 1), (1, 1, 1))
_ZPT = (4, 2, 1)


@attrs.frozen
class LaunchConfig:
    """Grid/block/shared-memory sizes of one kernel launch (CUDA order: x fastest)."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int
    zpt: int


def shared_bytes(block: tuple[int, int, int], zpt: int, radius: int, g: int, c: int, itemsize: int) -> int:
    bx, by, bz = block
    halo = (bx + 2 * radius) * (by + 2 * radius) * (bz * zpt + 2 * radius)
    return (g + min(CB, c)) * halo * itemsize


def _shape5(x: torch.Tensor) -> tuple[int, int, int, int, int]:
    """The (N, C, D, H, W) shape of a validated 5-D tensor, typed as five ints for :func:`launch_config`."""
    n, c, d, h, w = x.shape
    return n, c, d, h, w


def launch_config(
    shape: tuple[int, int, int, int, int],
    g: int,
    radius: int,
    itemsize: int,
    *,
    blocks: tuple[tuple[int, int, int], ...] = _BLOCKS,
    zpts: tuple[int, ...] = _ZPT,
    max_smem: int = MAX_SMEM,
) -> LaunchConfig | None:
    """Pick the first (block, zpt) whose halo'd tile fits ``max_smem``; None when nothing fits.

    ``shape`` is (N, C, D, H, W).  Block extents larger than the volume are shrunk to it so small volumes
    do not launch mostly idle threads.
    """
    n, c, d, h, w = shape
    for bx, by, bz in blocks:
        block = (min(bx, w), min(by, h), min(bz, d))
        for zpt in zpts:
            zpt = max(1, min(zpt, math.ceil(d / block[2])))
            smem = shared_bytes(block, zpt, radius, g, c, itemsize)
            if smem <= max_smem:
                tz = block[2] * zpt
                grid = (
                    math.ceil(w / block[0]),
                    math.ceil(h / block[1]),
                    math.ceil(d / tz) * math.ceil(c / CB) * n,
                )
                return LaunchConfig(grid=grid, block=block, shared_mem=smem, zpt=zpt)
    return None


def kernel_args(x_shape: tuple[int, ...], g: int, params: FilterParams) -> tuple[Any, ...]:
    """Scalar kernel arguments after the three pointers, in kernel order (zpt appended by the caller)."""
    n, c, d, h, w = x_shape
    cz, cy, cx, cr = params.exp2_coefficients()
    return (n, c, g, d, h, w, params.radius, cz, cy, cx, cr)


def probe() -> tuple[bool, str]:
    """Available only when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return False, f"cupy not importable: {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no CUDA device: {exc}"
    if count < 1:
        return False, "no CUDA device"
    if not torch.cuda.is_available():
        return False, "torch has no CUDA support (inputs come as torch CUDA tensors)"
    return True, f"{count} CUDA device(s)"


@functools.cache
def _kernel(name: str, device_index: int) -> Any:
    """Compile the module once per device and return the named function (CuPy also caches on disk)."""
    import cupy

    with cupy.cuda.Device(device_index):
        module = cupy.RawModule(code=kernel_source("bilateral3d.cu"), options=("--std=c++14",))
        return module.get_function(name)


class CupyBackend:
    """Fused CUDA joint bilateral filter (one exp2 per tap, shared-memory tiles)."""

    name = "cupy"

    def is_available(self) -> tuple[bool, str]:
        return probe()

    def supports(self, x: torch.Tensor, guide: torch.Tensor, params: FilterParams) -> tuple[bool, str]:
        if x.device.type != "cuda":
            return False, f"input is on {x.device}, the cupy backend filters CUDA tensors only"
        if x.dtype not in KERNEL_NAMES:
            return False, f"dtype {x.dtype} not compiled"
        if guide.shape[1] > MAXG:
            return False, f"guide has {guide.shape[1]} channels, the kernel supports at most {MAXG}"
        if launch_config(_shape5(x), guide.shape[1], params.radius, x.element_size()) is None:
            return False, f"radius {params.radius} tile does not fit {MAX_SMEM} bytes of shared memory"
        return True, ""

    def bilateral3d(self, x: torch.Tensor, guide: torch.Tensor, params: FilterParams) -> torch.Tensor:
        import cupy

        x = x.contiguous()
        guide = guide.contiguous()
        out = torch.empty_like(x)
        n, c, d, h, w = x.shape
        g = guide.shape[1]
        fn = _kernel(KERNEL_NAMES[x.dtype], x.device.index or 0)
        scalar = np.float64 if x.dtype == torch.float64 else np.float32
        # Split the batch so the flattened grid.z stays within the hardware limit.
        per_item = launch_config((1, c, d, h, w), g, params.radius, x.element_size())
        if per_item is None:
            raise ValueError(f"radius {params.radius} does not fit in shared memory")
        step = max(1, MAX_GRID_Z // per_item.grid[2])
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(x.device).cuda_stream)
        with cupy.cuda.Device(x.device.index or 0), stream:
            for i in range(0, n, step):
                xs, gs, os_ = x[i : i + step], guide[i : i + step], out[i : i + step]
                cfg = launch_config(_shape5(xs), g, params.radius, x.element_size())
                assert cfg is not None
                ints_and_floats = kernel_args(tuple(xs.shape), g, params)
                args = (
                    cupy.from_dlpack(xs),
                    cupy.from_dlpack(gs),
                    cupy.from_dlpack(os_),
                    *(np.int32(v) for v in ints_and_floats[:7]),
                    *(scalar(v) for v in ints_and_floats[7:]),
                    np.int32(cfg.zpt),
                )
                fn(cfg.grid, cfg.block, args, shared_mem=cfg.shared_mem)
        return out

"""Fixtures for the ops tests: a naive reference filter and the CPU build of the CUDA kernel."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from voxuda.ops.backends.base import FilterParams
from voxuda.ops.backends.cupy_backend import kernel_args, launch_config

SHIM_DIR = Path(__file__).parent / "shim"
CXXFLAGS = ["-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", "-Wall", "-Werror", "-Wno-unknown-pragmas"]


def naive_bilateral(x: torch.Tensor, g: torch.Tensor, p: FilterParams) -> torch.Tensor:
    """Textbook joint bilateral in float64, one offset at a time, no tricks: the ground truth."""
    r = p.radius
    x64, g64 = x.double(), g.double()
    xp = F.pad(x64, (r,) * 6, mode="replicate")
    gp = F.pad(g64, (r,) * 6, mode="replicate")
    _, _, d, h, w = x.shape
    num = torch.zeros_like(x64)
    den = torch.zeros_like(x64[:, :1])
    for dz in range(-r, r + 1):
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                sl = (slice(None), slice(None), slice(r + dz, r + dz + d), slice(r + dy, r + dy + h),
                      slice(r + dx, r + dx + w))
                d2 = ((gp[sl] - g64) ** 2).sum(1, keepdim=True)
                wgt = torch.exp(-d2 / (2 * p.sigma_range**2) - p.spatial_exponent(dz, dy, dx))
                num += wgt * xp[sl]
                den += wgt
    return (num / den).to(x.dtype)


@pytest.fixture(scope="session")
def naive():
    return naive_bilateral


class ShimKernel:
    """Runs voxuda/ops/kernels/bilateral3d.cu on the CPU via the g++ shim, with the backend's launch code."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        pairs = ((lib.shim_bilateral3d_f32, ctypes.c_float), (lib.shim_bilateral3d_f64, ctypes.c_double))
        for fn, ct in pairs:
            fn.restype = ctypes.c_int
            fn.argtypes = ([ctypes.c_void_p] * 3 + [ctypes.c_int] * 7 + [ct] * 4 + [ctypes.c_int]
                           + [ctypes.c_uint] * 6 + [ctypes.c_ulong])

    def __call__(self, x: torch.Tensor, guide: torch.Tensor, params: FilterParams,
                 blocks=((4, 4, 2),), zpts=(2, 1)) -> torch.Tensor:
        xn = np.ascontiguousarray(x.numpy())
        gn = np.ascontiguousarray(guide.numpy())
        out = np.full_like(xn, np.nan)
        cfg = launch_config(xn.shape, gn.shape[1], params.radius, xn.itemsize, blocks=blocks, zpts=zpts)
        assert cfg is not None, "launch_config found no tile"
        fn = self.lib.shim_bilateral3d_f64 if xn.dtype == np.float64 else self.lib.shim_bilateral3d_f32
        rc = fn(xn.ctypes.data, gn.ctypes.data, out.ctypes.data, *kernel_args(xn.shape, gn.shape[1], params),
                cfg.zpt, *cfg.grid, *cfg.block, cfg.shared_mem)
        assert rc == 0, f"shim refused launch {cfg}"
        return torch.from_numpy(out)


@pytest.fixture(scope="session")
def shim_kernel() -> ShimKernel:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ not found: the CPU shim of the CUDA kernel needs a C++20 compiler")
    kernels = resources.files("voxuda.ops.kernels")
    sources = [SHIM_DIR / "shim.cpp", SHIM_DIR / "cuda_shim.h"]
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.read_bytes())
    digest.update(kernels.joinpath("bilateral3d.cu").read_bytes())
    digest.update(" ".join(CXXFLAGS).encode())
    target = Path(tempfile.gettempdir()) / f"voxuda-shim-{digest.hexdigest()[:16]}" / "shim.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        cmd = [cxx, *CXXFLAGS, f"-I{kernels}", str(SHIM_DIR / "shim.cpp"), "-o", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, f"shim build failed:\n{' '.join(cmd)}\n{res.stderr}"
        os.replace(tmp, target)  # atomic: concurrent test runs never load a half-written library
    return ShimKernel(ctypes.CDLL(str(target)))


@pytest.fixture
def op_plugin():
    """Register op backends for one test through a hand-added plugin (:func:`voxuda.plugins.add_plugin`),
    the way a third-party package would through its ``voxuda_register_ops`` hook.

    ``op_plugin("mine", fast=dict(factory=..., priority=...))`` adds plugin ``mine`` registering ``fast``.
    """
    from tests.foundation.conftest import make_plugin
    from voxuda import plugins

    added: list[str] = []

    def add(name: str, **backends: dict) -> None:
        def voxuda_register_ops(register):
            for backend, registration in backends.items():
                register(backend, **registration)

        plugins.add_plugin(make_plugin(name, voxuda_register_ops=voxuda_register_ops), name)
        added.append(name)

    yield add
    for name in added:
        plugins.remove_plugin(name)

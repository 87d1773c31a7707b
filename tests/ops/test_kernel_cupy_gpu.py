"""The same parity checks as the CPU shim, against the real CuPy backend on a GPU (skipped elsewhere)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import voxuda.ops as ops
from voxuda.ops.backends.base import FilterParams
from voxuda.ops.backends.cupy_backend import CupyBackend, probe
from voxuda.ops.backends.torch_backend import TorchBackend

from .test_kernel_shim import CASES, _inputs

_ok, _why = probe()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _ok, reason=f"cupy backend unavailable: {_why}")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-g{c[1]}-r{c[2]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cupy_matches_torch(case, dtype):
    shape, g, r, sd, sr, sp = case
    x, guide = _inputs(shape, g, seed=r * 100 + g, dtype=dtype)
    params = FilterParams(radius=r, sigma_spatial=sd, sigma_range=sr, spacing=sp)
    want = TorchBackend().bilateral3d(x, guide, params)
    got = CupyBackend().bilateral3d(x.cuda(), guide.cuda(), params).cpu()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    err = ((got - want).abs() / want.abs().clamp_min(1.0)).max().item()
    assert err < tol


def test_auto_picks_cupy_for_cuda_tensors_and_a_cpu_backend_for_cpu():
    x = torch.randn(1, 1, 8, 9, 10)
    choice = ops.BackendChoice("auto")
    ops.bilateral3d(x.cuda(), radius=1, sigma_spatial=1.0, sigma_range=1.0, backend=choice)
    assert choice.name == "cupy"
    ops.bilateral3d(x, radius=1, sigma_spatial=1.0, sigma_range=1.0, backend=choice)
    assert choice.name == ("numba" if importlib.util.find_spec("numba") else "torch")
    assert choice.resolutions == 2  # one per device, not one per call


def test_large_volume_matches_torch_on_gpu():
    """Full-size tiles (32x8x1, zpt 4) and a batch: the shapes the shim cannot afford to run."""
    x = torch.randn(3, 1, 40, 70, 90, device="cuda")
    want = ops.improved_bilateral3d(x, radius=2, sigma_range=4.0, backend="torch")
    got = ops.improved_bilateral3d(x, radius=2, sigma_range=4.0, backend="cupy")
    assert (got - want).abs().max().item() < 1e-4

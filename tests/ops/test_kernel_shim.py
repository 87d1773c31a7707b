"""The CUDA kernel source, executed on the CPU by the g++ shim, against the torch backend.

The shim compiles voxuda/ops/kernels/bilateral3d.cu itself (not a copy), runs every block's threads as
real threads meeting at a barrier for __syncthreads, and is launched with the same launch_config /
kernel_args code the CuPy backend uses, so tiling, halo staging, clamping and the exp2 constant folding
are all exercised.  Small blocks (4x4x2, zpt 2) keep runs to a few thousand voxels but still leave tiles
that straddle the volume edge.
"""

from __future__ import annotations

import pytest
import torch

from voxuda.ops.backends.base import FilterParams
from voxuda.ops.backends.torch_backend import TorchBackend

CASES = [
    # (shape N,C,D,H,W, G, radius, sigma_d, sigma_r, spacing)
    ((1, 1, 5, 7, 9), 1, 1, 1.5, 0.5, (1.0, 1.0, 1.0)),
    ((1, 1, 5, 7, 9), 3, 2, 1.2, 2.0, (1.0, 1.0, 1.0)),
    ((2, 1, 6, 5, 11), 3, 1, 120.0, 1.2, (1.0, 1.0, 1.0)),
    ((1, 3, 7, 6, 5), 8, 2, 2.0, 3.0, (2.0, 1.0, 0.5)),
    ((1, 6, 5, 9, 6), 2, 1, 0.8, 0.7, (1.0, 1.5, 1.0)),  # C > VOXUDA_CB: two channel groups
    ((2, 2, 3, 3, 3), 1, 2, 1.0, 0.4, (1.0, 1.0, 1.0)),  # radius close to the volume size
    ((1, 1, 1, 4, 5), 1, 1, 1.0, 0.5, (1.0, 1.0, 1.0)),  # a single slice
]


def _inputs(shape, g, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    guide = torch.randn((shape[0], g, *shape[2:]), generator=gen, dtype=dtype)
    return x, guide


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-g{c[1]}-r{c[2]}")
def test_shim_matches_torch_float32(shim_kernel, case):
    shape, g, r, sd, sr, sp = case
    x, guide = _inputs(shape, g, seed=r * 100 + g)
    params = FilterParams(radius=r, sigma_spatial=sd, sigma_range=sr, spacing=sp)
    got = shim_kernel(x, guide, params)
    want = TorchBackend().bilateral3d(x, guide, params)
    assert torch.isfinite(got).all(), "kernel left outputs unwritten or read unstaged shared memory"
    err = ((got - want).abs() / want.abs().clamp_min(1.0)).max().item()
    assert err < 1e-5, f"max relative difference {err:.3g}"


def test_shim_matches_naive_float64(shim_kernel, naive):
    x, guide = _inputs((1, 2, 6, 5, 7), 3, seed=7, dtype=torch.float64)
    params = FilterParams(radius=2, sigma_spatial=1.3, sigma_range=0.9, spacing=(1.0, 2.0, 1.0))
    got = shim_kernel(x, guide, params)
    assert (got - naive(x, guide, params)).abs().max().item() < 1e-12


@pytest.mark.parametrize("blocks,zpts", [(((2, 3, 1),), (1,)), (((8, 2, 2),), (4,)), (((1, 1, 1),), (3,))])
def test_shim_tiling_does_not_change_results(shim_kernel, blocks, zpts):
    """Odd block shapes and several z per thread must give the same numbers: tiling is not semantics."""
    x, guide = _inputs((1, 2, 7, 6, 5), 3, seed=3)
    params = FilterParams(radius=1, sigma_spatial=1.0, sigma_range=1.0)
    ref = shim_kernel(x, guide, params)
    got = shim_kernel(x, guide, params, blocks=blocks, zpts=zpts)
    assert torch.equal(got, ref)


def test_shim_detects_a_broken_kernel_argument(shim_kernel):
    """Sanity check that the comparison can fail: a wrong range sigma gives a visible difference."""
    x, guide = _inputs((1, 1, 5, 7, 9), 1, seed=1)
    p = FilterParams(radius=1, sigma_spatial=1.5, sigma_range=0.5)
    got = shim_kernel(x, guide, FilterParams(radius=1, sigma_spatial=1.5, sigma_range=0.55))
    want = TorchBackend().bilateral3d(x, guide, p)
    assert (got - want).abs().max().item() > 1e-3

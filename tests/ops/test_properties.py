"""Property tests of the joint bilateral filter on every CPU backend (small random volumes)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import voxuda.ops as ops

SETTINGS = settings(max_examples=25, deadline=None)
#: the reference and, where numba is installed, the compiled CPU path (float64 here: exact exp)
CPU_BACKENDS = ["torch"] + (["numba"] if importlib.util.find_spec("numba") else [])
each_backend = pytest.mark.parametrize("backend", CPU_BACKENDS)

shapes = st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6))
radii = st.integers(0, 2)
sigmas = st.floats(0.3, 5.0)
spacings = st.tuples(st.floats(0.5, 2.0), st.floats(0.5, 2.0), st.floats(0.5, 2.0))


def _vol(shape, seed, channels=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((1, channels, *shape), generator=g, dtype=torch.float64)


@each_backend
@SETTINGS
@given(shape=shapes, r=radii, sd=sigmas, sr=sigmas, value=st.floats(-100, 100), sp=spacings)
def test_constant_volume_is_unchanged(backend, shape, r, sd, sr, value, sp):
    x = torch.full((1, 1, *shape), value, dtype=torch.float64)
    out = ops.bilateral3d(x, radius=r, sigma_spatial=sd, sigma_range=sr, spacing=sp, backend=backend)
    assert torch.allclose(out, x, rtol=1e-12, atol=1e-12)


@each_backend
@SETTINGS
@given(shape=shapes, r=st.integers(1, 2), sd=sigmas, seed=st.integers(0, 10_000), sp=spacings)
def test_huge_range_sigma_is_gaussian_smoothing(backend, shape, r, sd, seed, sp):
    x = _vol(shape, seed)
    out = ops.bilateral3d(x, radius=r, sigma_spatial=sd, sigma_range=1e8, spacing=sp, backend=backend)
    ax = [torch.arange(-r, r + 1, dtype=torch.float64) * s for s in sp]
    zz, yy, xx = torch.meshgrid(*ax, indexing="ij")
    k = torch.exp(-(zz**2 + yy**2 + xx**2) / (2 * sd**2))
    want = F.conv3d(F.pad(x, (r,) * 6, mode="replicate"), (k / k.sum())[None, None])
    assert torch.allclose(out, want, atol=1e-10)


@each_backend
@SETTINGS
@given(shape=shapes, r=radii, sd=sigmas, sr=sigmas, seed=st.integers(0, 10_000), g=st.integers(1, 4))
def test_output_within_window_min_max(backend, shape, r, sd, sr, seed, g):
    x = _vol(shape, seed, channels=2)
    guide = _vol(shape, seed + 1, channels=g)
    out = ops.bilateral3d(x, radius=r, sigma_spatial=sd, sigma_range=sr, guide=guide, backend=backend)
    k = 2 * r + 1
    xp = F.pad(x, (r,) * 6, mode="replicate")
    hi = F.max_pool3d(xp, k, stride=1)
    lo = -F.max_pool3d(-xp, k, stride=1)
    assert bool((out <= hi + 1e-12).all()) and bool((out >= lo - 1e-12).all())


@each_backend
@SETTINGS
@given(shape=shapes, r=radii, sd=sigmas, sr=sigmas, seed=st.integers(0, 10_000), sp=spacings,
       guide=st.sampled_from(["laplacian_gradient", "sobel_gradient", "intensity"]))
def test_flips_commute(backend, shape, r, sd, sr, seed, sp, guide):
    """Flipping an axis commutes with the filter (for the gradient guides up to the guide's sign, which
    the Euclidean distance ignores)."""
    x = _vol(shape, seed)
    kw = dict(radius=r, sigma_spatial=sd, sigma_range=sr, spacing=sp, guide=guide, backend=backend)
    out = ops.improved_bilateral3d(x, **kw)
    for axis in (2, 3, 4):
        flipped = ops.improved_bilateral3d(x.flip(axis), **kw)
        assert torch.allclose(flipped.flip(axis), out, atol=1e-10)


@each_backend
@SETTINGS
@given(shape=shapes, r=radii, sd=sigmas, sr=sigmas, seed=st.integers(0, 10_000),
       perm=st.permutations([2, 3, 4]))
def test_transposes_commute_with_isotropic_spacing(backend, shape, r, sd, sr, seed, perm):
    x = _vol(shape, seed)
    g = _vol(shape, seed + 7, channels=3)
    order = (0, 1, *perm)
    out = ops.bilateral3d(x, radius=r, sigma_spatial=sd, sigma_range=sr, guide=g, backend=backend)
    got = ops.bilateral3d(x.permute(order).contiguous(), radius=r, sigma_spatial=sd, sigma_range=sr,
                          guide=g.permute(order).contiguous(), backend=backend)
    assert torch.allclose(got, out.permute(order), atol=1e-10)


def test_anisotropic_spacing_breaks_transpose_symmetry():
    """Guard against spacing being ignored: with anisotropic spacing a transpose must change results."""
    x = _vol((5, 5, 5), 3)
    kw = dict(radius=1, sigma_spatial=0.7, sigma_range=10.0, spacing=(3.0, 1.0, 1.0))
    a = ops.bilateral3d(x, **kw)
    b = ops.bilateral3d(x.transpose(2, 4).contiguous(), **kw).transpose(2, 4)
    assert not np.allclose(a.numpy(), b.numpy(), atol=1e-6)

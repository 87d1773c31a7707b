"""Guides against independent scipy/numpy stencils (replicate border = scipy mode "nearest")."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

import voxuda.ops as ops


@pytest.fixture
def vol() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((7, 6, 9))


def test_laplacian_gradient_matches_scipy(vol):
    lap = ndi.laplace(vol, mode="nearest")  # 6-neighbour: sum of 1D second differences
    lp = np.pad(lap, 1, mode="edge")
    want = np.stack([
        lp[2:, 1:-1, 1:-1] - lp[:-2, 1:-1, 1:-1],
        lp[1:-1, 2:, 1:-1] - lp[1:-1, :-2, 1:-1],
        lp[1:-1, 1:-1, 2:] - lp[1:-1, 1:-1, :-2],
    ])
    got = ops.laplacian_gradient_guide(vol)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_sobel_gradient_matches_scipy(vol):
    want = np.stack([ndi.sobel(vol, axis=a, mode="nearest") for a in range(3)])
    np.testing.assert_allclose(ops.sobel_gradient_guide(vol), want, atol=1e-12)


def test_multichannel_guides_stack_per_channel():
    x = torch.randn(2, 2, 5, 6, 7, dtype=torch.float64)
    g = ops.laplacian_gradient_guide(x)
    assert g.shape == (2, 6, 5, 6, 7)
    assert torch.equal(g[:, 3:6], ops.laplacian_gradient_guide(x[:, 1:2]))


def test_guides_vanish_on_linear_ramps_only_where_expected():
    z = np.arange(6, dtype=np.float64)[:, None, None] * np.ones((6, 6, 6))
    lg = ops.laplacian_gradient_guide(z)
    assert np.abs(lg[:, 2:-2, 2:-2, 2:-2]).max() == 0  # Laplacian of a ramp is 0 away from borders
    sg = ops.sobel_gradient_guide(z)
    assert np.allclose(sg[0, 1:-1], 32.0) and np.allclose(sg[1:], 0)  # 2 * (1+2+1)^2 per unit slope

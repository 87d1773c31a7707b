"""The compiled CPU backend against the textbook loop and the torch reference (skipped without numba)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import voxuda.ops as ops
from voxuda.ops.backends.base import FilterParams
from voxuda.ops.backends.numba_backend import NumbaBackend, exp2_coefficients, probe
from voxuda.ops.backends.torch_backend import TorchBackend

pytest.importorskip("numba")

# (x shape, guide channels or None for the classic filter, radius, spacing): non-cubic, borders wider than
# the volume, a batch, multi-channel x and guides, anisotropic spacing; a plane split into three jobs of
# 16, 16 and 8 rows (padded width 62) and rows longer than a job (padded width 1032 > PIECE)
CASES = [
    ((1, 1, 7, 9, 11), None, 1, (1.0, 1.0, 1.0)),
    ((2, 1, 6, 5, 13), None, 2, (1.0, 1.0, 1.0)),
    ((1, 1, 2, 3, 5), None, 3, (1.0, 1.0, 1.0)),
    ((1, 3, 5, 6, 7), None, 1, (2.0, 1.0, 0.5)),
    ((2, 2, 6, 7, 5), 3, 2, (1.0, 1.5, 1.0)),
    ((1, 1, 4, 9, 33), 8, 1, (1.0, 1.0, 1.0)),
    ((1, 1, 3, 40, 60), None, 1, (1.0, 1.0, 1.0)),
    ((1, 2, 2, 3, 1030), 2, 1, (1.0, 1.0, 1.0)),
]


def _inputs(shape, g, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    guide = x if g is None else torch.randn((shape[0], g, *shape[2:]), generator=gen, dtype=dtype)
    return x, guide


def test_probe_reports_numba():
    ok, reason = probe()
    assert ok and reason.startswith("numba ")


@pytest.mark.parametrize(("shape", "g", "r", "spacing"), CASES)
def test_float64_matches_the_textbook_loop(naive, shape, g, r, spacing):
    x, guide = _inputs(shape, g, torch.float64)
    p = FilterParams(radius=r, sigma_spatial=1.1, sigma_range=0.9, spacing=spacing)
    got = NumbaBackend().bilateral3d(x, guide, p)
    torch.testing.assert_close(got, naive(x, guide, p), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("shape", "g", "r", "spacing"), CASES)
def test_float32_polynomial_weights_stay_within_float32_rounding(shape, g, r, spacing):
    """float32 uses the polynomial 2**w: compared with float64, errors stay at the float32 level."""
    x, guide = _inputs(shape, g, torch.float32, seed=1)
    p = FilterParams(radius=r, sigma_spatial=1.1, sigma_range=0.9, spacing=spacing)
    got = NumbaBackend().bilateral3d(x, guide, p)
    assert got.dtype == torch.float32
    want = TorchBackend().bilateral3d(x.double(), guide.double(), p)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-5)
    reference32 = TorchBackend().bilateral3d(x, guide, p)
    torch.testing.assert_close(got, reference32, rtol=0, atol=2e-5)


def test_exp2_polynomial_fit_is_below_the_weight_bound():
    """The fit itself (float64 evaluation) on the reduced interval [-0.5, 0.5] leaves room for float32
    rounding under FLOAT32_WEIGHT_RTOL; the compiled weight is checked in test_numba_fast_exp.py."""
    f = np.linspace(-0.5, 0.5, 100_001)
    fit = np.polynomial.polynomial.polyval(f, exp2_coefficients())
    assert np.abs(fit / np.exp2(f) - 1).max() < 1e-7
    # a lower degree would not do: the accuracy claim is not vacuous
    low = np.polynomial.polynomial.polyval(f, exp2_coefficients(4))
    assert np.abs(low / np.exp2(f) - 1).max() > 1e-6


def test_weights_far_below_the_clamp_keep_the_centre_value():
    """A guide so contrasted that every off-centre weight underflows: the output is the input itself."""
    x, _ = _inputs((1, 1, 6, 6, 6), None, torch.float32, seed=3)
    guide = torch.arange(216, dtype=torch.float32).reshape(1, 1, 6, 6, 6) * 1e3
    p = FilterParams(radius=1, sigma_spatial=1.0, sigma_range=1.0)
    got = NumbaBackend().bilateral3d(x, guide, p)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("guide", ["laplacian_gradient", "sobel_gradient", "intensity"])
def test_improved_filter_through_the_public_api(guide):
    x = torch.randn(3, 1, 12, 10, 14)
    got = ops.improved_bilateral3d(x, guide=guide, backend="numba")
    want = ops.improved_bilateral3d(x.double(), guide=guide, backend="torch")
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-5)


def test_declines_what_it_cannot_run():
    b = NumbaBackend()
    x = torch.zeros(1, 1, 2, 2, 2)
    p = FilterParams(radius=1, sigma_spatial=1.0, sigma_range=1.0)
    assert b.supports(x, x, p)[0]
    assert not b.supports(x, x.double(), p)[0]
    assert not b.supports(x.half(), x.half(), p)[0]
    assert b.bilateral3d(x, x, FilterParams(radius=0, sigma_spatial=1.0, sigma_range=1.0)).equal(x)

"""The float32 numba kernel's fast exp2 and its effect on results, against the exact-exp definition.

The weight bound (``FLOAT32_WEIGHT_RTOL``) is checked on the compiled function itself; the filter's float32
output is checked against the textbook float64 loop (exact exp) on random and step-edge volumes, odd sizes,
windows wider than the volume, constant and extreme-intensity volumes, and every guide mode.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import voxuda.ops as ops
from voxuda.ops.backends.base import FilterParams
from voxuda.ops.backends.numba_backend import (
    _LOG2_FLOOR,
    FLOAT32_WEIGHT_RTOL,
    NumbaBackend,
    exp2_coefficients,
    fast_exp2,
    log2_floor_if_needed,
    spatial_log2_table,
)

pytest.importorskip("numba")

#: Documented float32 tolerance of the numba backend against the exact float64 filter (docs/ops.md), for
#: intensities of order 1; it scales with the intensities' magnitude.
ATOL_F32 = 2e-5
FLOOR32 = _LOG2_FLOOR[np.dtype(np.float32)]


def _log2_weights() -> np.ndarray:
    """Every clamped log2 weight region: a dense grid, random fractions, and values at the rounding ties."""
    rng = np.random.default_rng(0)
    ints = np.arange(FLOOR32, 1, dtype=np.float32)
    w = np.concatenate([
        np.linspace(FLOOR32, 0.0, 2_000_001, dtype=np.float32),
        -rng.random(1_000_000, dtype=np.float32) * 4,
        ints + np.float32(0.5), ints - np.float32(0.5),
        np.nextafter(ints + np.float32(0.5), np.float32(0)),
        np.nextafter(ints - np.float32(0.5), np.float32(-1)),
    ])
    return w[(w >= FLOOR32) & (w <= 0)]


def test_compiled_float32_weight_is_within_the_stated_bound():
    w = _log2_weights()
    rel = np.abs(fast_exp2(w).astype(np.float64) / np.exp2(w.astype(np.float64)) - 1)
    assert rel.max() < FLOAT32_WEIGHT_RTOL
    assert rel.max() > 1e-8  # the polynomial really runs (an exact exp2 would sit at float32 rounding)


def test_weights_below_the_floor_clamp_to_a_normal_number():
    w = np.array([FLOOR32 - 0.3, -1e4, -1e30, -3.0e38], dtype=np.float32)
    got = fast_exp2(w)
    assert np.isfinite(got).all() and (got > 0).all()
    np.testing.assert_allclose(got, np.exp2(FLOOR32), rtol=FLOAT32_WEIGHT_RTOL)


def test_float64_weight_is_the_exact_exp2():
    w = np.linspace(-1000.0, 0.0, 100_001)
    np.testing.assert_allclose(fast_exp2(w), np.exp2(w), rtol=4e-16, atol=0)


def _step_edge(shape, height=6.0, noise=0.3, seed=0):
    """A z-step of ``height`` plus Gaussian noise: the case the range kernel exists for."""
    g = torch.Generator().manual_seed(seed)
    x = noise * torch.randn((1, 1, *shape), generator=g)
    x[:, :, shape[0] // 2:] += height
    return x


def _random(shape, seed=0):
    return torch.randn((1, 1, *shape), generator=torch.Generator().manual_seed(seed))


# odd sizes, a window wider than the volume in every axis (3 > 2 and r = 3 > 2, 1), one-voxel axes, rows
# longer than one job (W + 2r > 1024)
SHAPES = [(5, 7, 9), (2, 3, 1), (1, 1, 13), (9, 4, 1031)]


@pytest.mark.parametrize("kind", ["random", "step"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("radius", [1, 2, 3, 4])  # passes of 3; 5; 5 + 2; 5 + 3 + 1 taps per window row
def test_classic_float32_is_within_the_documented_error_of_the_exact_filter(naive, kind, shape, radius):
    x = _random(shape, seed=radius) if kind == "random" else _step_edge(shape, seed=radius)
    p = FilterParams(radius=radius, sigma_spatial=radius / 2.5 + 0.3, sigma_range=1.0)
    got = NumbaBackend().bilateral3d(x, x, p)
    exact = naive(x.double(), x.double(), p)
    err = (got.double() - exact).abs().max().item()
    assert err < ATOL_F32, err


def test_step_edge_is_kept_and_matches_the_exact_filter(naive):
    x = _step_edge((10, 12, 14), height=6.0, noise=0.3)
    p = FilterParams(radius=2, sigma_spatial=1.0, sigma_range=1.0)
    got = NumbaBackend().bilateral3d(x, x, p)
    torch.testing.assert_close(got.double(), naive(x.double(), x.double(), p), rtol=0, atol=ATOL_F32)
    jump = got[0, 0, 5].mean() - got[0, 0, 4].mean()
    assert 5.5 < jump.item() < 6.5  # the edge survives; a Gaussian of this width would halve it


def test_a_worse_exp_would_fail_the_output_check(naive):
    """The output check has teeth: a degree-3 exp2 (1e-4 relative per weight) breaks ATOL_F32."""
    from voxuda.ops.backends._numba_kernels import bilateral_pieces, pad_replicate

    x = _random((8, 9, 10), seed=5)
    p = FilterParams(radius=2, sigma_spatial=1.0, sigma_range=1.0)
    scale = np.float32(np.sqrt(1.0 / np.log(2.0) / 2.0))
    xs = x.numpy()
    xp = np.empty((1, 1, 12, 13, 14), np.float32)
    gp = np.empty_like(xp)
    ranges = np.empty((12, 2), np.float32)
    pad_replicate(xs, 2, np.float32(1.0), xp, ranges)
    pad_replicate(xs, 2, scale, gp, ranges)
    coarse = np.zeros(6, np.float32)
    coarse[:4] = exp2_coefficients(3)
    out = np.empty_like(xs)
    bilateral_pieces(xp, gp, out, 2, spatial_log2_table(p, np.float32), np.float32(FLOOR32), coarse)
    assert (torch.from_numpy(out).double() - naive(x.double(), x.double(), p)).abs().max() > ATOL_F32


@pytest.mark.parametrize("value", [0.0, 3.7, -1234.5, 1e30])
def test_constant_volumes_stay_constant(value):
    x = torch.full((1, 1, 6, 7, 9), value, dtype=torch.float32)
    got = NumbaBackend().bilateral3d(x, x, FilterParams(radius=2, sigma_spatial=1.0, sigma_range=1.0))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, x, rtol=1e-6, atol=0)


@pytest.mark.parametrize("magnitude", [1e-30, 1e15, 1e30, 1e36])
def test_extreme_intensities_give_finite_results_close_to_exact(naive, magnitude):
    """Tiny intensities: every range weight is 1 (spatial smoothing); huge ones: every off-centre weight is
    clamped, so the output is the input; both without NaN/inf and within the float32 tolerance, scaled."""
    x = _random((6, 7, 8), seed=7) * magnitude
    x = x.float()
    p = FilterParams(radius=2, sigma_spatial=1.0, sigma_range=1.0)
    got = NumbaBackend().bilateral3d(x, x, p)
    assert torch.isfinite(got).all()
    exact = naive(x.double(), x.double(), p)
    assert ((got.double() - exact).abs().max() / magnitude).item() < ATOL_F32


def test_the_grouped_classic_path_equals_the_general_path():
    """G = C = 1 runs three taps per pass; a second, constant guide channel adds nothing to the distances
    but sends the call through the per-tap path: the two must agree to float32 rounding."""
    x = _step_edge((7, 9, 11), seed=3)
    p = FilterParams(radius=2, sigma_spatial=1.2, sigma_range=0.8)
    grouped = NumbaBackend().bilateral3d(x, x, p)
    two_channel_guide = torch.cat([x, torch.zeros_like(x)], dim=1)
    general = NumbaBackend().bilateral3d(x, two_channel_guide, p)
    torch.testing.assert_close(grouped, general, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("guide", ["laplacian_gradient", "sobel_gradient", "intensity"])
def test_every_guide_mode_is_within_the_documented_error_on_a_step(guide):
    x = _step_edge((9, 10, 11), height=3.0, noise=0.5, seed=4)
    kw = dict(radius=2, sigma_spatial=1.5, sigma_range=2.0, guide=guide)
    got = ops.improved_bilateral3d(x, backend="numba", **kw)
    exact = ops.improved_bilateral3d(x.double(), backend="torch", **kw)
    torch.testing.assert_close(got.double(), exact, rtol=0, atol=ATOL_F32)


def _kernel_run(x: torch.Tensor, p: FilterParams, floor):
    """The backend's own steps with the clamp decision overridden."""
    from voxuda.ops.backends._numba_kernels import bilateral_pieces, pad_replicate

    r = p.radius
    xs = x.numpy()
    padded = (*xs.shape[:2], *(s + 2 * r for s in xs.shape[2:]))
    xp, gp = np.empty(padded, np.float32), np.empty(padded, np.float32)
    ranges = np.empty((padded[0] * padded[1] * padded[2], 2), np.float32)
    pad_replicate(xs, r, np.float32(1.0), xp, ranges)
    pad_replicate(xs, r, np.float32(np.sqrt(1.0 / np.log(2.0) / (2.0 * p.sigma_range**2))), gp, ranges)
    spatial = spatial_log2_table(p, np.float32)
    out = np.empty_like(xs)
    bilateral_pieces(xp, gp, out, r, spatial, floor, exp2_coefficients().astype(np.float32))
    return out, log2_floor_if_needed(ranges.reshape(padded[0], padded[1], -1, 2), spatial)


def test_the_clamp_is_dropped_only_when_no_weight_needs_it_and_changes_no_bit():
    p = FilterParams(radius=2, sigma_spatial=1.0, sigma_range=1.0)
    x = _step_edge((7, 8, 9), height=6.0)
    clamped, decided = _kernel_run(x, p, np.float32(FLOOR32))
    assert decided is None  # log2 weights >= -(6.9^2 / 2 / ln 2) - 12 / 2 / ln 2 > -115
    unclamped, _ = _kernel_run(x, p, None)
    np.testing.assert_array_equal(unclamped, clamped)
    np.testing.assert_array_equal(NumbaBackend().bilateral3d(x, x, p).numpy(), clamped)
    # a 40-unit step at sigma_r 1 sends weights to 2**-1150: the clamp must stay
    _, decided = _kernel_run(_step_edge((7, 8, 9), height=40.0), p, None)
    assert decided == np.float32(FLOOR32)


def test_clamp_decision_sums_the_guide_channels():
    spatial = np.full((3, 3, 3), -5.0, np.float32)
    ranges = np.zeros((2, 3, 4, 2), np.float32)  # (N, G, planes, (min, max))
    ranges[1, :, 2, 1] = 6.5  # item 1: 3 channels span 6.5 -> distances up to 126.75, + 5 > 114
    assert log2_floor_if_needed(ranges, spatial) == np.float32(FLOOR32)
    ranges[1, 0, 2, 1] = 0.0  # two channels: 84.5 + 5 <= 114
    assert log2_floor_if_needed(ranges, spatial) is None

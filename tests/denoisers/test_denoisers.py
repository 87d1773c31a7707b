"""Denoisers: contracts (shape/dtype/device, configs), references, and the edge-vs-noise trade-off."""

from __future__ import annotations

import importlib.util

import attrs
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from voxuda.denoisers import (
    BilateralDenoiser,
    BilateralDenoiserConfig,
    GaussianDenoiser,
    GaussianDenoiserConfig,
    Identity,
    IdentityConfig,
    ImprovedBilateralDenoiser,
    ImprovedBilateralDenoiserConfig,
)

ALL = [
    (Identity, IdentityConfig),
    (GaussianDenoiser, GaussianDenoiserConfig),
    (BilateralDenoiser, BilateralDenoiserConfig),
    (ImprovedBilateralDenoiser, ImprovedBilateralDenoiserConfig),
]


@pytest.mark.parametrize("cls,cfg_cls", ALL, ids=lambda c: getattr(c, "__name__", ""))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_preserved(cls, cfg_cls, dtype):
    x = torch.randn(3, 2, 6, 7, 5, dtype=dtype)
    for den in (cls(), cls(None), cls(cfg_cls())):
        y = den(x)
        assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
        assert isinstance(den.name, str)
        # the op backend a bilateral filter resolved; None for filters that use none
        uses_op = isinstance(den, (BilateralDenoiser, ImprovedBilateralDenoiser))
        assert (den.op_backend is not None) == uses_op


@pytest.mark.parametrize("cls,cfg_cls", ALL, ids=lambda c: getattr(c, "__name__", ""))
def test_configs_are_documented_attrs_classes(cls, cfg_cls):
    assert attrs.has(cfg_cls)
    for f in attrs.fields(cfg_cls):
        assert f.metadata.get("help"), f"{cfg_cls.__name__}.{f.name} has no help"
        assert f.kw_only


@pytest.mark.parametrize(
    "cfg_cls,kwargs,match",
    [
        (GaussianDenoiserConfig, dict(sigma=0.0), "sigma"),
        (GaussianDenoiserConfig, dict(truncate=-1.0), "truncate"),
        (BilateralDenoiserConfig, dict(radius=-1), "radius"),
        (BilateralDenoiserConfig, dict(sigma_range=0), "sigma_range"),
        (BilateralDenoiserConfig, dict(range_scale="relative"), "range_scale"),
        (ImprovedBilateralDenoiserConfig, dict(guide="canny"), "guide"),
        (ImprovedBilateralDenoiserConfig, dict(sigma_spatial=float("inf")), "sigma_spatial"),
        (ImprovedBilateralDenoiserConfig, dict(backend=""), "backend"),
    ],
)
def test_config_validation(cfg_cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cfg_cls(**kwargs)


def test_defaults_are_the_papers():
    c = ImprovedBilateralDenoiserConfig()
    assert (c.radius, c.sigma_spatial, c.sigma_range, c.guide, c.range_scale, c.backend) == (
        1,
        120.0,
        1.2,
        "laplacian_gradient",
        "absolute",
        "auto",
    )


def test_bad_batch_raises():
    with pytest.raises(ValueError, match="improved_bilateral: x must have shape"):
        ImprovedBilateralDenoiser()(torch.randn(4, 4, 4))
    with pytest.raises(ValueError, match="gaussian: x must be a floating tensor"):
        GaussianDenoiser()(torch.ones(1, 1, 4, 4, 4, dtype=torch.int32))


def test_records_backend():
    den = ImprovedBilateralDenoiser()
    den(torch.randn(1, 1, 4, 4, 4))
    # on the CPU: the compiled backend where numba is installed (the test extra has it), torch otherwise
    expected = "numba" if importlib.util.find_spec("numba") else "torch"
    assert den.op_backend == expected
    den = ImprovedBilateralDenoiser(ImprovedBilateralDenoiserConfig(backend="torch"))
    den(torch.randn(1, 1, 4, 4, 4))
    assert den.op_backend == "torch"


def test_gaussian_matches_scipy():
    x = np.random.default_rng(0).standard_normal((2, 1, 9, 8, 10))
    y = GaussianDenoiser(GaussianDenoiserConfig(sigma=1.3, truncate=2.5))(torch.from_numpy(x)).numpy()
    want = np.stack([ndi.gaussian_filter(v[0], 1.3, truncate=2.5, mode="nearest") for v in x])[:, None]
    np.testing.assert_allclose(y, want, atol=1e-10)


def test_guide_std_makes_the_filter_scale_equivariant():
    x = torch.randn(2, 1, 8, 8, 8, dtype=torch.float64)
    rel = ImprovedBilateralDenoiser(ImprovedBilateralDenoiserConfig(range_scale="guide_std"))
    assert torch.allclose(rel(7.0 * x), 7.0 * rel(x), atol=1e-10)
    ab = ImprovedBilateralDenoiser()
    assert not torch.allclose(ab(7.0 * x), 7.0 * ab(x), atol=1e-3)  # absolute sigma_r depends on scale


# ---- edge preservation vs noise reduction --------------------------------------------------------------
# A step edge 0 -> 1 along x plus Gaussian noise (std 0.2), z-scored like the paper's inputs.  "Noise" is
# the std of (output - clean) in flat regions >= 4 voxels from the edge; "jump" is the mean difference
# between the two voxel planes at the edge (the clean z-scored jump is ~1.86 here).  A Gaussian whose
# sigma is bisected to give the same flat-region noise is the linear baseline: an edge-preserving filter
# must keep a larger jump at equal noise.
N = 32


def _edge_data():
    g = torch.Generator().manual_seed(0)
    clean = torch.zeros(2, 1, N, N, N, dtype=torch.float64)
    clean[..., N // 2 :] = 1.0
    x = clean + 0.2 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    m, s = x.mean(), x.std()
    return (x - m) / s, (clean - m) / s


def _noise_and_jump(y, clean):
    res = y - clean
    flat = torch.cat([res[..., 2 : N // 2 - 4].flatten(), res[..., N // 2 + 4 : -2].flatten()])
    return flat.std().item(), (y[..., N // 2] - y[..., N // 2 - 1]).mean().item()


def _matched_gaussian_jump(x, clean, target_noise):
    lo, hi = 0.05, 4.0
    for _ in range(25):
        mid = 0.5 * (lo + hi)
        noise, _ = _noise_and_jump(GaussianDenoiser(GaussianDenoiserConfig(sigma=mid))(x), clean)
        lo, hi = (mid, hi) if noise > target_noise else (lo, mid)
    return _noise_and_jump(GaussianDenoiser(GaussianDenoiserConfig(sigma=hi))(x), clean)


def test_classic_bilateral_keeps_edges_better_than_gaussian():
    """Measured: noise 0.37 -> 0.08; jump 1.36 vs 0.93 for the matched Gaussian (sigma 0.80)."""
    x, clean = _edge_data()
    noise, jump = _noise_and_jump(BilateralDenoiser()(x), clean)
    g_noise, g_jump = _matched_gaussian_jump(x, clean, noise)
    assert noise < 0.5 * _noise_and_jump(x, clean)[0]
    assert abs(g_noise - noise) < 0.01
    assert jump > 1.3 * g_jump


@pytest.mark.xfail(
    strict=True,
    reason=(
        "Finding, not tuned away: with the Laplacian-gradient guide the IBF blurs a step edge MORE than a "
        "Gaussian of equal noise reduction (absolute: noise 0.31, jump 1.57 vs Gaussian 1.75; guide_std: "
        "noise "
        "0.16, jump 0.90 vs 1.37).  The two voxels straddling a step have identical guide vectors (the "
        "Laplacian is +h/-h there, so its central difference is -h on both sides), so they average fully. "
        "Strict xfail: if a guide change makes this pass, revisit docs/ops.md."
    ),
)
@pytest.mark.parametrize("range_scale", ["absolute", "guide_std"])
def test_ibf_keeps_edges_better_than_gaussian(range_scale):
    x, clean = _edge_data()
    den = ImprovedBilateralDenoiser(ImprovedBilateralDenoiserConfig(range_scale=range_scale))
    noise, jump = _noise_and_jump(den(x), clean)
    _, g_jump = _matched_gaussian_jump(x, clean, noise)
    assert noise < 0.9 * _noise_and_jump(x, clean)[0]
    assert jump > g_jump

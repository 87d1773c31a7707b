"""Public API of the bilateral ops: correctness against a textbook loop, types, validation, dispatch."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import voxuda.ops as ops
from voxuda.ops.backends.base import FilterParams
from voxuda.ops.backends.torch_backend import TorchBackend


@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_backend_matches_textbook_loop(naive, radius, dtype):
    gen = torch.Generator().manual_seed(radius)
    x = torch.randn(2, 2, 6, 7, 5, generator=gen, dtype=dtype)
    g = torch.randn(2, 3, 6, 7, 5, generator=gen, dtype=dtype)
    p = FilterParams(radius=radius, sigma_spatial=1.7, sigma_range=1.1, spacing=(1.0, 0.5, 2.0))
    got = ops.bilateral3d(x, radius=radius, sigma_spatial=1.7, sigma_range=1.1, guide=g, spacing=p.spacing)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (got - naive(x, g, p)).abs().max().item() < tol
    assert got.dtype == dtype and got.shape == x.shape


@pytest.mark.parametrize("channels", [(1, 1), (2, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_blocking_changes_no_bit(monkeypatch, naive, channels, dtype):
    """Blocks smaller than a shift (two weight spans), larger (one shared span) and the whole array agree
    bit for bit: each voxel's sum is built in the same order from the same operands whatever the blocks."""
    import voxuda.ops.backends.torch_backend as tb

    c, g_count = channels
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, c, 5, 6, 7, generator=gen, dtype=dtype)
    g = torch.randn(2, g_count, 5, 6, 7, generator=gen, dtype=dtype)
    p = FilterParams(radius=2, sigma_spatial=1.3, sigma_range=0.9)
    results = []
    for block in (13, 64, 333, 1 << 30):  # the largest shift here is 2*10*11 + 2*11 + 2 = 244
        monkeypatch.setattr(tb, "BLOCK_BYTES", block * x.element_size())
        results.append(TorchBackend().bilateral3d(x, g, p))
    assert all(torch.equal(r, results[-1]) for r in results[:-1])
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (results[0] - naive(x, g, p)).abs().max().item() < tol


def test_classic_filter_uses_x_as_guide(naive):
    x = torch.randn(1, 1, 6, 6, 6, dtype=torch.float64)
    got = ops.bilateral3d(x, radius=1, sigma_spatial=1.0, sigma_range=0.5)
    p = FilterParams(radius=1, sigma_spatial=1.0, sigma_range=0.5)
    assert torch.allclose(got, naive(x, x, p), atol=1e-12)


def test_numpy_and_3d_round_trip():
    v = np.random.default_rng(0).standard_normal((6, 7, 8)).astype(np.float32)
    out = ops.bilateral3d(v, radius=1, sigma_spatial=1.0, sigma_range=1.0)
    assert isinstance(out, np.ndarray) and out.shape == v.shape and out.dtype == np.float32
    t = ops.bilateral3d(torch.from_numpy(v)[None, None], radius=1, sigma_spatial=1.0, sigma_range=1.0)
    np.testing.assert_array_equal(out, t[0, 0].numpy())
    g = ops.laplacian_gradient_guide(v)
    assert isinstance(g, np.ndarray) and g.shape == (3, 6, 7, 8)
    out_g = ops.bilateral3d(v, radius=1, sigma_spatial=1.0, sigma_range=1.0, guide=g)
    assert out_g.shape == v.shape


def test_improved_is_bilateral_with_computed_guide():
    x = torch.randn(2, 1, 8, 8, 8, dtype=torch.float64)
    pairs = (
        ("laplacian_gradient", ops.laplacian_gradient_guide),
        ("sobel_gradient", ops.sobel_gradient_guide),
    )
    for name, fn in pairs:
        got = ops.improved_bilateral3d(x, guide=name, sigma_range=3.0)
        want = ops.bilateral3d(x, radius=1, sigma_spatial=120.0, sigma_range=3.0, guide=fn(x))
        assert torch.equal(got, want)
    classic = ops.improved_bilateral3d(x, guide="intensity", sigma_range=3.0)
    assert torch.equal(classic, ops.bilateral3d(x, radius=1, sigma_spatial=120.0, sigma_range=3.0))


def test_radius_zero_is_identity():
    x = torch.randn(1, 2, 4, 5, 6)
    assert torch.equal(ops.bilateral3d(x, radius=0, sigma_spatial=1.0, sigma_range=1.0), x)


def test_does_not_modify_input_and_works_under_grad():
    x = torch.randn(1, 1, 5, 5, 5, requires_grad=True)
    before = x.detach().clone()
    out = ops.improved_bilateral3d(x)
    assert torch.equal(x.detach(), before) and not out.requires_grad


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(x=torch.randn(4, 4)), "x must have shape"),
        (dict(x=torch.randn(1, 1, 1, 4, 4, 4)), "x must have shape"),
        (dict(x=torch.ones(1, 1, 4, 4, 4, dtype=torch.int32)), "x must be float32 or float64"),
        (dict(x=np.ones((4, 4, 4), dtype=np.int16)), "x must be float32 or float64"),
        (dict(x=[[1.0]]), "x must be a torch.Tensor or numpy.ndarray"),
        (dict(x=torch.tensor(float("nan")).expand(1, 1, 3, 3, 3)), "x contains NaN"),
        (dict(x=torch.full((1, 1, 3, 3, 3), float("inf"))), "x contains NaN"),
        (dict(sigma_spatial=0.0), "sigma_spatial"),
        (dict(sigma_range=-1.0), "sigma_range"),
        (dict(sigma_range=float("nan")), "sigma_range"),
        (dict(radius=-1), "radius must be >= 0"),
        (dict(radius=1.5), "radius must be an int"),
        (dict(spacing=(1.0, 1.0)), "spacing"),
        (dict(spacing=(1.0, 0.0, 1.0)), "spacing"),
        (dict(guide=torch.randn(1, 2, 4, 4, 5)), "guide shape .* does not match"),
        (dict(guide=torch.randn(2, 2, 4, 4, 4)), "guide shape .* does not match"),
        (dict(guide=torch.randn(4, 4)), "guide must have shape"),
        (dict(guide=torch.ones(1, 1, 4, 4, 4, dtype=torch.int64)), "guide must be float32 or float64"),
        (dict(guide=torch.full((1, 1, 4, 4, 4), float("nan"))), "guide contains NaN"),
        (dict(backend="nope"), "backend 'nope' is unknown"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(kwargs, match):
    args = dict(x=torch.randn(1, 1, 4, 4, 4), radius=1, sigma_spatial=1.0, sigma_range=1.0)
    args.update(kwargs)
    x = args.pop("x")
    with pytest.raises(ValueError, match=match):
        ops.bilateral3d(x, **args)


def test_improved_rejects_unknown_guide():
    with pytest.raises(ValueError, match="guide must be one of"):
        ops.improved_bilateral3d(torch.randn(1, 1, 4, 4, 4), guide="canny")


def test_auto_without_gpu_takes_the_best_cpu_backend_and_records_it():
    choice = ops.BackendChoice("auto")
    ops.bilateral3d(torch.randn(1, 1, 4, 4, 4), radius=1, sigma_spatial=1.0, sigma_range=1.0, backend=choice)
    has_numba = importlib.util.find_spec("numba") is not None
    if not torch.cuda.is_available():
        assert choice.name == ("numba" if has_numba else "torch")
    rows = {s.name: s for s in ops.available_backends()}
    assert rows["torch"].available and rows["torch"].priority == 10
    assert rows["numba"].priority == 50 and rows["numba"].available == has_numba
    assert rows["cupy"].priority == 100
    choice = ops.BackendChoice("torch")
    ops.bilateral3d(torch.randn(1, 1, 4, 4, 4), radius=1, sigma_spatial=1.0, sigma_range=1.0, backend=choice)
    assert choice.name == "torch"
    if not torch.cuda.is_available():
        assert not rows["cupy"].available and rows["cupy"].reason
        with pytest.raises(ValueError, match="backend 'cupy' is not available"):
            ops.bilateral3d(torch.randn(1, 1, 4, 4, 4), radius=1, sigma_spatial=1.0, sigma_range=1.0,
                            backend="cupy")


def test_backend_classes_construct_without_arguments():
    from voxuda.ops.backends.cupy_backend import CupyBackend
    from voxuda.ops.backends.numba_backend import NumbaBackend

    for cls in (TorchBackend, NumbaBackend, CupyBackend):
        b = cls()
        ok, reason = b.is_available()
        assert isinstance(ok, bool) and isinstance(reason, str)

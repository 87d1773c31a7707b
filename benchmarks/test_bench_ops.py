"""pytest-benchmark benchmarks of the bilateral backends (not part of `pytest tests`).

Run: pytest benchmarks/test_bench_ops.py --benchmark-only --benchmark-enable
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import voxuda.ops as ops
from voxuda.ops.backends.base import FilterParams

BACKENDS = [s.name for s in ops.available_backends()]


def _device(name: str) -> str:
    return "cuda" if name == "cupy" else "cpu"


def _skip_unavailable(name: str) -> None:
    st = {s.name: s for s in ops.available_backends()}[name]
    if not st.available:
        pytest.skip(f"backend {name} unavailable: {st.reason}")


def _sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


@pytest.mark.benchmark(group="bilateral-5^3-64^3")
@pytest.mark.parametrize("backend", BACKENDS)
def test_bench_bilateral_5cubed_64(benchmark, backend):
    _skip_unavailable(backend)
    dev = _device(backend)
    x = torch.randn(1, 1, 64, 64, 64, device=dev)

    def run():
        out = ops.bilateral3d(x, radius=2, sigma_spatial=0.8, sigma_range=1.0, backend=backend)
        _sync(dev)
        return out

    run()  # warm-up: CuPy compiles on first call
    out = benchmark(run)
    assert out.shape == x.shape  # a named backend never falls back: it ran, or the call raised


@pytest.mark.benchmark(group="bilateral-5^3-64^3")
def test_bench_simpleitk_5cubed_64(benchmark):
    """The reference the backends' ratios are read against (same group, same run, same window)."""
    sitk = pytest.importorskip("SimpleITK")
    f = sitk.BilateralImageFilter()
    f.SetDomainSigma(2 / 2.5)  # ITK's radius is ceil(2.5 sigma_d): a 5^3 window
    f.SetRangeSigma(1.0)
    f.SetNumberOfWorkUnits(torch.get_num_threads())
    image = sitk.GetImageFromArray(torch.randn(64, 64, 64).numpy())
    out = benchmark(f.Execute, image)
    assert out.GetSize() == (64, 64, 64)


@pytest.mark.benchmark(group="bilateral-5^3-64^3")
def test_bench_previous_numba_kernel_5cubed_64(benchmark):
    """The numba kernel before the grouped 512-bit one, for the new/old ratio in the same group and run."""
    pytest.importorskip("numba")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _bilateral_numba_previous import previous_numba_bilateral

    x = torch.randn(1, 1, 64, 64, 64)
    p = FilterParams(radius=2, sigma_spatial=0.8, sigma_range=1.0)
    out = benchmark(previous_numba_bilateral, x, x, p)
    new = ops.bilateral3d(x, radius=2, sigma_spatial=0.8, sigma_range=1.0, backend="numba")
    torch.testing.assert_close(out, new, rtol=0, atol=2e-5)  # the same filter, within float32 rounding


@pytest.mark.benchmark(group="ibf-16x1x32^3")
@pytest.mark.parametrize("backend", BACKENDS)
def test_bench_ibf_batch(benchmark, backend):
    _skip_unavailable(backend)
    dev = _device(backend)
    x = torch.randn(16, 1, 32, 32, 32, device=dev)

    def run():
        out = ops.improved_bilateral3d(x, backend=backend)
        _sync(dev)
        return out

    run()
    out = benchmark(run)
    assert out.shape == x.shape

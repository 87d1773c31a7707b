"""Chunked whole-tomogram filtering equals the unchunked filter bit for bit, on every CPU backend."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import voxuda.ops as ops


@pytest.fixture(scope="module")
def vol() -> np.ndarray:
    rng = np.random.default_rng(2)
    return rng.standard_normal((23, 19, 17)).astype(np.float32)


CPU_BACKENDS = ["torch"] + (["numba"] if importlib.util.find_spec("numba") else [])

# chunks that do not divide the shape, that are thinner than the halo, and that are a single voxel thick
CHUNKS = [(8, 7, 6), (3, 19, 5), (1, 4, 17), (23, 19, 17)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("guide", ["laplacian_gradient", "sobel_gradient", "intensity"])
def test_improved_chunked_is_exact(vol, chunk, guide, backend):
    kw = dict(radius=2, sigma_spatial=2.0, sigma_range=4.0, guide=guide, backend=backend)
    want = ops.improved_bilateral3d(vol, **kw)
    got = ops.improved_bilateral3d_chunked(vol, chunk=chunk, **kw)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("chunk", CHUNKS[:2])
def test_classic_chunked_is_exact_with_and_without_guide(vol, chunk, backend):
    kw = dict(radius=1, sigma_spatial=1.0, sigma_range=0.8, backend=backend)
    np.testing.assert_array_equal(ops.bilateral3d_chunked(vol, chunk=chunk, **kw), ops.bilateral3d(vol, **kw))
    g = ops.sobel_gradient_guide(vol)
    np.testing.assert_array_equal(ops.bilateral3d_chunked(vol, chunk=chunk, guide=g, **kw),
                                  ops.bilateral3d(vol, guide=g, **kw))


def test_too_small_halo_would_be_caught(vol):
    """The equality test can fail: filtering chunks without their halo gives different values."""
    want = ops.improved_bilateral3d(vol, sigma_range=4.0)
    bad = np.concatenate([ops.improved_bilateral3d(vol[:11], sigma_range=4.0),
                          ops.improved_bilateral3d(vol[11:], sigma_range=4.0)])
    assert not np.array_equal(bad, want)


def test_memmap_in_and_out_and_integer_volume(tmp_path, vol):
    src = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.int16, shape=vol.shape)
    src[:] = (vol * 100).astype(np.int16)
    dst = np.lib.format.open_memmap(tmp_path / "o.npy", mode="w+", dtype=np.float32, shape=vol.shape)
    res = ops.improved_bilateral3d_chunked(src, chunk=(8, 8, 8), sigma_range=400.0, out=dst)
    assert res is dst
    np.testing.assert_array_equal(dst, ops.improved_bilateral3d(src.astype(np.float32), sigma_range=400.0))


def test_chunked_validation(vol):
    with pytest.raises(ValueError, match="volume must be a 3D"):
        ops.bilateral3d_chunked(vol[None], radius=1, sigma_spatial=1.0, sigma_range=1.0)
    with pytest.raises(ValueError, match="chunk"):
        ops.improved_bilateral3d_chunked(vol, chunk=(0, 4, 4))
    with pytest.raises(ValueError, match="sigma_range"):
        ops.improved_bilateral3d_chunked(vol, sigma_range=0)
    with pytest.raises(ValueError, match="guide must be"):
        ops.bilateral3d_chunked(vol, radius=1, sigma_spatial=1.0, sigma_range=1.0, guide=vol[:3])

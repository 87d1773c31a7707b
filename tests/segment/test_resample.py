"""Streaming resampling (input to the model's grid, probabilities back) against F.interpolate."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tests.segment.synthetic import ArraySink
from voxuda.segment.source import ArraySource, ResampledSource, resampled_shape
from voxuda.segment.writer import ResampleSink


def _trilinear(volume: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    x = torch.from_numpy(volume).reshape(1, -1, *volume.shape[-3:])
    return F.interpolate(x, size=shape, mode="trilinear", align_corners=False).reshape(
        *volume.shape[:-3], *shape).numpy()


def test_resampled_source_equals_trilinear_interpolation() -> None:
    volume = np.random.default_rng(0).standard_normal((13, 17, 11)).astype(np.float32)
    for shape in [(26, 34, 22), (7, 9, 5), (20, 10, 11)]:
        source = ResampledSource(ArraySource(volume), shape, cache_planes=2)
        got = np.concatenate([source.read_planes(z, min(z + 4, shape[0])) for z in range(0, shape[0], 4)])
        np.testing.assert_allclose(got, _trilinear(volume, shape), atol=1e-5)


def test_resample_sink_equals_trilinear_interpolation_of_probabilities() -> None:
    probs = np.random.default_rng(1).random((2, 9, 12, 10)).astype(np.float32)
    for shape in [(18, 24, 20), (5, 7, 6), (9, 12, 10)]:
        sink = ArraySink(shape)
        resample = ResampleSink(sink, probs.shape[1], shape)
        for z0, n in [(0, 4), (4, 1), (5, 4)]:  # bands of different sizes, as the sliding window sends them
            resample.put(z0, probs[:, z0:z0 + n])
        resample.finish()
        assert sink.finished and sink.probs is not None
        np.testing.assert_allclose(sink.probs, _trilinear(probs, shape), atol=1e-5)


def test_resampled_shape_keeps_the_physical_extent() -> None:
    assert resampled_shape((100, 200, 50), (20.0, 20.0, 20.0), 10.0) == (200, 400, 100)
    assert resampled_shape((100, 200, 50), (10.0, 5.0, 10.0), 10.0) == (100, 100, 50)
    assert resampled_shape((1, 3, 3), (1.0, 1.0, 1.0), 100.0) == (1, 1, 1)

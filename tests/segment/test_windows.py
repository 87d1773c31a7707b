"""Window placement and the importance map."""

from __future__ import annotations

import numpy as np
import pytest

from voxuda.segment.windows import importance_map, window_starts


@pytest.mark.parametrize("size", [1, 5, 31, 32, 33, 47, 64, 100, 200])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
def test_windows_cover_every_voxel_and_stay_inside(size: int, overlap: float) -> None:
    patch = 32
    starts = window_starts(size, patch, overlap)
    covered = np.zeros(size, dtype=int)
    for s in starts:
        covered[s:s + patch] += 1
        assert s >= 0 and (s + patch <= size or size < patch)
    assert covered.min() >= 1
    assert starts == sorted(set(starts))
    if size > patch:
        stride = max(1, round(patch * (1 - overlap)))
        assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_window_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="overlap"):
        window_starts(10, 4, 1.0)
    with pytest.raises(ValueError, match="positive"):
        window_starts(0, 4, 0.5)


def test_gaussian_importance_peaks_in_the_centre_and_is_positive_everywhere() -> None:
    w = importance_map(16)
    assert w.shape == (16, 16, 16) and w.dtype == np.float32
    assert w.min() > 0
    assert w[7:9, 7:9, 7:9].min() == pytest.approx(w.max())
    assert w[0, 0, 0] < 1e-3 * w.max()
    np.testing.assert_allclose(w, w[::-1, ::-1, ::-1])
    assert np.all(importance_map(8, "constant") == 1)

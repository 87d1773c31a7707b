"""The classic filter against SimpleITK's BilateralImageFilter.

ITK is not the textbook filter: it tabulates the range Gaussian at 100 samples over [0, 4 sigma_r), looks
weights up by flooring |v_q - v_p| / step, gives weight 0 beyond 4 sigma_r, and uses the window radius
ceil(2.5 sigma_d / spacing) with a zero-flux (replicate) border.  So the test is in two parts:

1. ITK equals an explicit model of that quantised filter to float32 rounding, everywhere including borders
   (this pins down the definition, so part 2's tolerance is not a guess);
2. our exact filter differs from ITK by no more than the quantisation allows: a floor lookup with step
   0.04 sigma_r moves each weight by at most max|G'| * step = 0.607 / sigma_r * 0.04 sigma_r ~ 0.024, and
   the output by roughly that times the spread of the neighbours inside the range window (~sigma_r), so
   max |diff| < 0.03 sigma_r and the mean, where most weights barely move, < 0.005 sigma_r.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import voxuda.ops as ops

sitk = pytest.importorskip("SimpleITK", reason="SimpleITK (test extra) not installed")

CASES = [(0.8, 1.0), (0.4, 0.5), (1.2, 2.0)]  # (sigma_d, sigma_r): radius ceil(2.5 sigma_d) = 2, 1, 3


@pytest.fixture(scope="module")
def vol() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((14, 15, 16)) + 3.0 * (np.arange(16) > 7)).astype(np.float32)


def _itk(v: np.ndarray, sd: float, sr: float) -> np.ndarray:
    f = sitk.BilateralImageFilter()
    f.SetDomainSigma(sd)
    f.SetRangeSigma(sr)
    f.SetNumberOfWorkUnits(2)
    return sitk.GetArrayFromImage(f.Execute(sitk.GetImageFromArray(v)))


def _itk_model(v: np.ndarray, sd: float, sr: float, r: int, mu: float = 4.0, n: int = 100) -> np.ndarray:
    vp = np.pad(v.astype(np.float64), r, mode="edge")
    d, h, w = v.shape
    step = mu * sr / n
    table = np.exp(-0.5 * (np.arange(n) * step) ** 2 / sr**2)
    num = np.zeros(v.shape)
    den = np.zeros(v.shape)
    for dz in range(-r, r + 1):
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                q = vp[r + dz : r + dz + d, r + dy : r + dy + h, r + dx : r + dx + w]
                dist = np.abs(q - v)
                idx = np.minimum(np.floor(dist / step).astype(int), n - 1)
                spatial = np.exp(-(dz * dz + dy * dy + dx * dx) / (2 * sd * sd))
                wgt = np.where(dist < mu * sr, table[idx], 0.0) * spatial
                num += wgt * q
                den += wgt
    return num / den


@pytest.mark.parametrize("sd,sr", CASES)
def test_itk_is_the_quantised_filter(vol, sd, sr):
    r = math.ceil(2.5 * sd)
    assert np.abs(_itk(vol, sd, sr) - _itk_model(vol, sd, sr, r)).max() < 1e-5


@pytest.mark.parametrize("sd,sr", CASES)
def test_classic_filter_matches_itk_within_quantisation(vol, sd, sr):
    r = math.ceil(2.5 * sd)
    ours = ops.bilateral3d(vol, radius=r, sigma_spatial=sd, sigma_range=sr)
    diff = np.abs(ours - _itk(vol, sd, sr))
    assert diff.max() < 0.03 * sr
    assert diff.mean() < 0.005 * sr
    # and the comparison is not vacuous: the filter changes the volume far more than that
    assert np.abs(ours - vol).mean() > 3 * diff.mean()

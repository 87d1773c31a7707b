"""The aligners on synthetic volumes with known answers: planes, radial filters, state round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from voxuda.align import build_aligner
from voxuda.align.base import renormalize
from voxuda.align.detrend import detrend_volumes
from voxuda.align.spectrum import mean_radial_power
from voxuda.noise.fourier import radial_frequency

BOX = 16


def _numpy_detrend(volume: np.ndarray, order: int) -> np.ndarray:
    """Independent reference: least squares with numpy on raw voxel indices."""
    z, y, x = (a.ravel().astype(np.float64) for a in np.meshgrid(*(np.arange(n) for n in volume.shape),
                                                                      indexing="ij"))
    columns = [np.ones_like(z)]
    if order >= 1:
        columns += [z, y, x]
    if order >= 2:
        columns += [z * z, y * y, x * x, z * y, z * x, y * x]
    design = np.stack(columns, axis=1)
    coef, *_ = np.linalg.lstsq(design, volume.ravel().astype(np.float64), rcond=None)
    return (volume.ravel() - design @ coef).reshape(volume.shape)


def _zscore(x: torch.Tensor) -> torch.Tensor:
    return renormalize(x, "zscore")


def _plane(shape: tuple[int, int, int], a: float, b: float, c: float, d: float) -> torch.Tensor:
    z, y, x = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij")
    return a + b * z + c * y + d * x


@pytest.mark.parametrize("order", [0, 1, 2])
def test_detrend_matches_an_independent_least_squares_fit(order: int) -> None:
    rng = np.random.default_rng(order)
    volume = rng.standard_normal((BOX, 12, 10)) + 0.2 * np.arange(BOX)[:, None, None] ** (1 + (order == 2))
    ours = detrend_volumes(torch.from_numpy(volume).float()[None, None], order)[0, 0].numpy()
    # float32 arithmetic: the error scales with the input's magnitude (up to ~45 for the quadratic trend), and
    # the summation order depends on torch's thread count, so the tolerance is relative to that magnitude
    scale = float(np.abs(volume).max())
    np.testing.assert_allclose(ours, _numpy_detrend(volume, order), atol=2e-6 * scale)


def test_detrend_removes_an_added_plane_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    base = detrend_volumes(torch.randn(3, 1, BOX, BOX, BOX, generator=generator))  # plane-free
    plane = _plane((BOX, BOX, BOX), 0.7, 0.15, -0.08, 0.3)  # a ramp as strong as the structure itself
    ramped = _zscore(base + plane)
    aligner = build_aligner("detrend")
    out = aligner.apply(ramped, "target")
    assert (ramped - _zscore(base)).abs().max() > 1.0  # the plane really changed the volume
    assert (out - _zscore(base)).abs().max() < 2e-5
    assert torch.equal(aligner.apply(ramped, "source"), out)  # the same transform for both domains


def test_detrend_leaves_a_plane_free_volume_unchanged() -> None:
    generator = torch.Generator().manual_seed(1)
    flat = _zscore(detrend_volumes(torch.randn(2, 1, BOX, BOX, BOX, generator=generator)))
    out = build_aligner("detrend").apply(flat, "target")
    assert (out - flat).abs().max() < 2e-5


def test_detrend_renormalises_with_the_data_normalisation() -> None:
    x = _zscore(torch.randn(2, 1, BOX, BOX, BOX) + _plane((BOX, BOX, BOX), 0, 0.2, 0, 0))
    out = build_aligner("detrend", "minmax").apply(x, "target")
    assert torch.allclose(out.amin(dim=(1, 2, 3, 4)), torch.zeros(2), atol=1e-6)
    assert torch.allclose(out.amax(dim=(1, 2, 3, 4)), torch.ones(2), atol=1e-5)


def _coloured(n: int, seed: int, slope: float) -> torch.Tensor:
    """z-scored volumes whose amplitude spectrum falls as ``1 / (1 + slope * |f| * box)``."""
    generator = torch.Generator().manual_seed(seed)
    white = torch.randn(n, 1, BOX, BOX, BOX, generator=generator)
    return _zscore(_filter(white, lambda r: 1.0 / (1.0 + slope * r * BOX)))


def _filter(x: torch.Tensor, response) -> torch.Tensor:  # type: ignore[no-untyped-def]
    radius = radial_frequency((BOX, BOX, BOX))[..., : BOX // 2 + 1]
    spectrum = torch.fft.rfftn(x, dim=(-3, -2, -1)) * response(radius)
    return torch.fft.irfftn(spectrum, s=(BOX,) * 3, dim=(-3, -2, -1))


def _tilt(r: torch.Tensor) -> torch.Tensor:
    """A known radial filter: low frequencies damped, high frequencies boosted (gain 0.4 .. 3.9)."""
    return 0.4 + 4.0 * r


def _fitted(source: torch.Tensor, target: torch.Tensor, **params: object):  # type: ignore[no-untyped-def]
    aligner = build_aligner({"name": "spectrum_match", **params})
    aligner.fit(source, target)
    return aligner


def _relative_gap(a: torch.Tensor, b: torch.Tensor, last: int | None = None) -> float:
    """Largest relative difference over the shells 1..last (DC excluded)."""
    return float(((a[1:last] - b[1:last]).abs() / b[1:last]).max())


def test_spectrum_match_gives_the_target_the_source_spectrum() -> None:
    source = _coloured(24, seed=0, slope=0.3)
    target = _zscore(_filter(_coloured(24, seed=1, slope=0.3), _tilt))
    aligner = _fitted(source, target, detrend=False)
    _, source_power = mean_radial_power(source)
    _, before = mean_radial_power(target)
    _, after = mean_radial_power(aligner.apply(target, "target"))
    assert _relative_gap(before, source_power) > 0.5  # the tilt is a real shift
    assert _relative_gap(after, source_power) < 0.05
    # a fresh target batch of the same domain is matched by the same statistics, not only the fitted one
    # (up to sampling noise: checked inside the Nyquist sphere, where shells hold many frequencies)
    _, fresh = mean_radial_power(aligner.apply(_zscore(_filter(_coloured(24, seed=2, slope=0.3), _tilt)),
                                               "target"))
    assert _relative_gap(fresh, source_power, BOX // 2 + 1) < 0.1


def test_spectrum_match_keeps_phases_and_undoes_the_filter() -> None:
    source = _coloured(24, seed=3, slope=0.3)
    clean = _coloured(8, seed=4, slope=0.3)
    target = _zscore(_filter(clean, _tilt))
    out = _fitted(source, target, detrend=False).apply(target, "target")

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    assert corr(target, clean) < 0.97
    assert corr(out, clean) > 0.995  # the amplitudes came back and nothing moved


def test_spectrum_match_source_is_only_detrended() -> None:
    source, target = _coloured(6, seed=5, slope=0.3), _coloured(6, seed=6, slope=1.0)
    aligner = _fitted(source, target)
    assert torch.allclose(aligner.apply(source, "source"), build_aligner("detrend").apply(source, "source"))
    assert torch.equal(_fitted(source, target, detrend=False).apply(source, "source"), source)


def test_spectrum_match_clamps_the_gain() -> None:
    source = _coloured(6, seed=7, slope=0.0)  # white
    target = _zscore(_filter(_coloured(6, seed=8, slope=0.0), lambda r: torch.exp(-((r / 0.1) ** 2))))
    gain = torch.tensor(_fitted(source, target, max_gain=3.0).state()["gain"])
    assert gain.max() == pytest.approx(3.0) and gain.min() >= 1 / 3.0 - 1e-6
    assert gain[0] == 1.0  # DC is left alone


def test_state_round_trip_through_json_gives_identical_outputs() -> None:
    source = _coloured(6, seed=9, slope=0.3)
    target = _zscore(_filter(_coloured(6, seed=10, slope=0.3), _tilt))
    aligner = _fitted(source, target)
    state = json.loads(json.dumps(aligner.state()))
    assert state["box"] == [BOX] * 3 and len(state["source_power"]) == len(state["target_power"])
    assert state["volumes"] == {"source": 6, "target": 6}
    restored = build_aligner("spectrum_match")
    restored.load_state(state)
    for domain in ("source", "target"):
        assert torch.equal(restored.apply(target, domain), aligner.apply(target, domain))


def test_windows_of_another_size_use_the_same_frequency_gain() -> None:
    source = _coloured(12, seed=11, slope=0.3)
    target = _zscore(_filter(_coloured(12, seed=12, slope=0.3), _tilt))
    aligner = _fitted(source, target, detrend=False)
    big = 2 * BOX
    generator = torch.Generator().manual_seed(13)
    white = torch.randn(4, 1, big, big, big, generator=generator)
    radius = radial_frequency((big,) * 3)[..., : big // 2 + 1]

    def make(response) -> torch.Tensor:  # type: ignore[no-untyped-def]
        spectrum = torch.fft.rfftn(white, dim=(-3, -2, -1)) * response(radius)
        return _zscore(torch.fft.irfftn(spectrum, s=(big,) * 3, dim=(-3, -2, -1)))

    clean = make(lambda r: 1.0 / (1.0 + 0.3 * r * BOX))
    out = aligner.apply(make(lambda r: _tilt(r) / (1.0 + 0.3 * r * BOX)), "target")
    assert out.shape == clean.shape
    assert float(torch.corrcoef(torch.stack([out.flatten(), clean.flatten()]))[0, 1]) > 0.95


def test_unfitted_or_broken_state_is_refused() -> None:
    aligner = build_aligner("spectrum_match")
    assert aligner.needs_fit and not build_aligner("detrend").needs_fit
    with pytest.raises(RuntimeError, match="fit"):
        aligner.apply(torch.zeros(1, 1, 4, 4, 4), "target")
    with pytest.raises(ValueError, match="lacks"):
        aligner.load_state({"box": [4, 4, 4]})
    with pytest.raises(ValueError, match="stateless"):
        build_aligner("detrend").load_state({"gain": [1.0]})


def test_none_is_the_identity() -> None:
    x = torch.randn(2, 1, 4, 4, 4)
    assert build_aligner("none").apply(x, "target") is x

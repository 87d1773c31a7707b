"""``skew_matched``: source-coloured noise that makes the source's particles as faint as the target's."""

from __future__ import annotations

import pytest
import torch

from voxuda.api import build_component
from voxuda.noise.fourier import highpass, radial_power
from voxuda.noise.skew_matched import SkewMatchedNoise, added_variance, mean_skewness, target_colour_power

from .helpers import smooth_volumes  # unit-variance noise in a low band, as the Fourier-model domains'


def _domain(n: int, contrast: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse dark cubes of ``contrast`` noise standard deviations on smooth noise, then z-scored."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, 24, 24, 24, dtype=torch.bool)
    for i in range(n):
        z, y, x = torch.randint(2, 15, (3,), generator=g).tolist()
        labels[i, z:z + 7, y:y + 7, x:x + 7] = True
    volumes = smooth_volumes(n, 24, g, cutoff=0.08) - contrast * labels[:, None].float()
    volumes = (volumes - volumes.mean(dim=(-3, -2, -1), keepdim=True)) / volumes.std(dim=(-3, -2, -1),
                                                                                      keepdim=True)
    return volumes, labels


def _contrast(volumes: torch.Tensor, labels: torch.Tensor) -> float:
    v, fg = volumes[:, 0], labels
    inside = (v * fg).sum((1, 2, 3)) / fg.sum((1, 2, 3))
    outside = (v * ~fg).sum((1, 2, 3)) / (~fg).sum((1, 2, 3))
    return float((inside - outside).mean())


def test_the_added_variance_has_its_closed_form() -> None:
    assert added_variance(-0.16, -0.02, cap=20.0) == pytest.approx(3.0)  # 8^(2/3) - 1
    assert added_variance(-0.16, -0.02, cap=2.0) == 2.0
    assert added_variance(-0.02, -0.16, cap=20.0) == 0.0  # the target's particles stand out more
    assert added_variance(0.1, -0.05, cap=20.0) == 0.0  # opposite polarity


def test_noised_source_matches_the_targets_skewness_and_contrast() -> None:
    source, source_labels = _domain(64, contrast=3.0, seed=0)
    target, target_labels = _domain(64, contrast=1.5, seed=1)
    model = build_component("noise_model", {"name": "skew_matched", "n_samples": 64})
    assert isinstance(model, SkewMatchedNoise)
    model.fit(target)
    model.measure_source(source)
    assert model.premise is not None and model.premise.holds and model.variance > 1.0
    noisy = model(source, torch.Generator().manual_seed(2))
    # (a smooth noise's skewness estimate varies from draw to draw: -0.057 to -0.085 for three seeds here)
    assert mean_skewness(noisy) == pytest.approx(mean_skewness(target), rel=0.5)
    assert abs(mean_skewness(noisy)) < 0.3 * abs(mean_skewness(source))
    # the particles are now about as faint as the target's, where they were twice as strong
    assert abs(_contrast(source, source_labels)) > 1.6 * abs(_contrast(target, target_labels))
    assert _contrast(noisy, source_labels) == pytest.approx(_contrast(target, target_labels), rel=0.1)
    # each volume keeps its mean and standard deviation (the data are z-scored)
    torch.testing.assert_close(noisy.mean(dim=(-3, -2, -1)), source.mean(dim=(-3, -2, -1)), atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(noisy.std(dim=(-3, -2, -1)), source.std(dim=(-3, -2, -1)), rtol=1e-4, atol=0)
    # the noise has the source's colour: the high band stays nearly empty (white noise would fill it)
    share = float(highpass(noisy[:, 0], (15, 15, 15))[0].var(dim=(-3, -2, -1)).mean())
    assert share < 0.02


def test_a_failed_premise_adds_nothing_and_says_so() -> None:
    strong, _ = _domain(16, contrast=3.0, seed=0)
    faint, _ = _domain(16, contrast=1.0, seed=1)
    model = SkewMatchedNoise()
    model.fit(strong)  # the target has the stronger particles
    model.measure_source(faint)
    assert model.premise is not None and not model.premise.holds
    assert model.variance == 0.0 and model.state()["premise_holds"] is False
    assert torch.equal(model(faint), faint)
    warning = model.premise.warning()
    assert warning is not None and "skew_matched premise fails" in warning


def test_noise_needs_both_measurements_and_survives_a_state_dict_round_trip() -> None:
    source, _ = _domain(8, contrast=3.0, seed=0)
    target, _ = _domain(8, contrast=1.0, seed=1)
    model = SkewMatchedNoise()
    model.fit(target)
    with pytest.raises(RuntimeError, match="measure_source"):
        model(source)
    model.measure_source(source)
    fresh = SkewMatchedNoise()
    fresh.load_state_dict(model.state_dict())
    assert fresh.state() == model.state()
    assert torch.equal(fresh(source, torch.Generator().manual_seed(3)),
                       model(source, torch.Generator().manual_seed(3)))


def test_target_colour_power_is_the_spectrum_difference_with_the_asked_variance() -> None:
    g = torch.Generator().manual_seed(0)
    source = torch.rand(8, 8, 8, generator=g) + 0.1
    extra = torch.rand(8, 8, 8, generator=g)
    extra = extra / extra.mean() * 2.0  # the noise that makes the target: variance 2
    target = (source / source.mean() + extra) / 3.0  # unit-variance target spectrum
    torch.testing.assert_close(target_colour_power(source, target * 5.0, 2.0), extra, rtol=1e-4, atol=1e-5)
    # where the target has less power than the source in some shells, those are clipped to 0 and the rest
    # is scaled so that the mean is still the asked variance
    clipped = target_colour_power(source, torch.ones(8, 8, 8), 0.5)
    assert float(clipped.min()) == 0.0 and float(clipped.mean()) == pytest.approx(0.5, rel=1e-5)


def _spectrum(volumes: torch.Tensor) -> torch.Tensor:
    return radial_power(volumes - volumes.mean(dim=(-3, -2, -1), keepdim=True))[1]


def test_target_colour_gives_the_noisy_source_the_targets_spectrum() -> None:
    source, _ = _domain(64, contrast=3.0, seed=0)
    target, _ = _domain(64, contrast=1.5, seed=1)
    g = torch.Generator().manual_seed(5)
    target = target + 0.5 * torch.randn(target.shape, generator=g)  # white: a high band the source lacks
    dims = (-3, -2, -1)
    target = (target - target.mean(dim=dims, keepdim=True)) / target.std(dim=dims, keepdim=True)
    results = {}
    for colour in ("source", "target"):
        model = build_component("noise_model", {"name": "skew_matched", "n_samples": 64, "colour": colour})
        model.fit(target)
        model.measure_source(source)
        results[colour] = model(source, torch.Generator().manual_seed(2))
    # shells from 0.42 cycles/voxel up, the source has almost nothing there; the last (corner) shell holds
    # few frequencies, so its estimate is left out of the per-shell comparison
    high = slice(10, -1)
    target_high = _spectrum(target)[high]
    assert float(_spectrum(source)[high].sum()) < 0.05 * float(target_high.sum())
    # source colour leaves the high band nearly empty; target colour fills it as the target has it
    assert float(_spectrum(results["source"])[high].sum()) < 0.2 * float(target_high.sum())
    torch.testing.assert_close(_spectrum(results["target"])[high], target_high, rtol=0.15, atol=0)
    # and the skewness is still matched (the amount of noise is set by the same moment)
    assert abs(mean_skewness(results["target"])) < 0.5 * abs(mean_skewness(source))


def test_target_colour_survives_a_state_dict_round_trip_and_a_bad_colour_is_refused() -> None:
    source, _ = _domain(8, contrast=3.0, seed=0)
    target, _ = _domain(8, contrast=1.0, seed=1)
    model = build_component("noise_model", {"name": "skew_matched", "colour": "target"})
    model.fit(target)
    model.measure_source(source)
    fresh = build_component("noise_model", {"name": "skew_matched", "colour": "target"})
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(source, torch.Generator().manual_seed(3)),
                       model(source, torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="colour"):
        build_component("noise_model", {"name": "skew_matched", "colour": "pink"})


def test_a_fixed_variance_replaces_the_estimate_and_is_recorded() -> None:
    """The diagnostic: the noise level given (e.g. a simulator's), not estimated, even where the premise
    fails; run.json then says so beside sigma2."""
    strong, _ = _domain(16, contrast=3.0, seed=0)
    faint, _ = _domain(16, contrast=1.0, seed=1)
    model = build_component("noise_model", {"name": "skew_matched", "fixed_variance": 6.0})
    assert isinstance(model, SkewMatchedNoise)
    model.fit(strong)
    model.measure_source(faint)  # the estimate would add nothing here (the premise fails) ...
    assert model.variance == 6.0 and model.state()["fixed_variance"] == 6.0 and model.state()["sigma2"] == 6.0
    assert model.premise is None  # ... but it is not used, so no "no noise is added" warning
    noisy = model(faint, torch.Generator().manual_seed(0))
    # noise of 6 volume variances, then re-standardised: the signal keeps 1/7 of the variance
    signal_share = float(torch.corrcoef(torch.stack([noisy.flatten(), faint.flatten()]))[0, 1] ** 2)
    assert signal_share == pytest.approx(1 / 7, abs=0.03)
    with pytest.raises(Exception, match="fixed_variance"):
        build_component("noise_model", {"name": "skew_matched", "fixed_variance": 0.0})


def _wedged(volumes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``volumes`` with the missing wedge ``mask`` applied in Fourier space, then z-scored."""
    out = torch.fft.ifftn(torch.fft.fftn(volumes, dim=(-3, -2, -1)) * mask, dim=(-3, -2, -1)).real
    dims = (-3, -2, -1)
    return (out - out.mean(dim=dims, keepdim=True)) / out.std(dim=dims, keepdim=True)


def _wedge_share(volumes: torch.Tensor, missing: torch.Tensor) -> float:
    """Share of the volumes' (mean-removed) power at the ``missing`` frequencies."""
    centred = volumes - volumes.mean(dim=(-3, -2, -1), keepdim=True)
    power = (torch.fft.fftn(centred, dim=(-3, -2, -1)).abs() ** 2).reshape(-1, *volumes.shape[-3:]).mean(0)
    return float(power[missing].sum() / power.sum())


@pytest.mark.parametrize("colour", ["source", "target"])
def test_the_full_spectrum_leaves_the_missing_wedge_empty_where_radial_noise_fills_it(colour: str) -> None:
    from voxuda.simulate.wedge import wedge_mask

    mask = torch.from_numpy(wedge_mask((24, 24, 24), -60.0, 60.0))
    missing = mask == 0
    source_raw, source_labels = _domain(64, contrast=3.0, seed=0)
    target_raw, target_labels = _domain(64, contrast=1.5, seed=1)
    source, target = _wedged(source_raw, mask), _wedged(target_raw, mask)
    assert _wedge_share(source, missing) < 1e-6 and _wedge_share(target, missing) < 1e-6
    noisy = {}
    for spectrum in ("radial", "full"):
        model = build_component("noise_model", {"name": "skew_matched", "n_samples": 64, "colour": colour,
                                                "spectrum": spectrum})
        model.fit(target)
        model.measure_source(source)
        noisy[spectrum] = model(source, torch.Generator().manual_seed(2))
    # radial noise spreads its power over every direction, the wedge's third of the sphere included
    assert _wedge_share(noisy["radial"], missing) > 0.1
    assert _wedge_share(noisy["full"], missing) < 1e-3
    # the amount of noise is still set by the skewness: the particles become about as faint as the target's
    assert abs(mean_skewness(noisy["full"])) < 0.5 * abs(mean_skewness(source))
    assert _contrast(noisy["full"], source_labels) == pytest.approx(_contrast(target, target_labels), rel=0.2)


def test_the_full_spectrum_survives_a_state_dict_round_trip_and_refuses_another_shape() -> None:
    source, _ = _domain(8, contrast=3.0, seed=0)
    target, _ = _domain(8, contrast=1.0, seed=1)
    config = {"name": "skew_matched", "colour": "target", "spectrum": "full"}
    model = build_component("noise_model", config)
    model.fit(target)
    model.measure_source(source)
    fresh = build_component("noise_model", config)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(source, torch.Generator().manual_seed(3)),
                       model(source, torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="measured on 24x24x24 volumes and cannot colour 16x16x16"):
        model(source[..., :16, :16, :16])
    with pytest.raises(ValueError, match="spectrum"):
        build_component("noise_model", {"name": "skew_matched", "spectrum": "cubic"})

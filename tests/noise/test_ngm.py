"""NGM: variance estimate, compensation, the three combine modes, rate/side mapping, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from voxuda.api import build_component
from voxuda.errors import ConfigError
from voxuda.noise.fourier import highpass_mask, rate_for_side, side_for_rate
from voxuda.noise.ngm import NGMConfig, NoiseGenerationModule

from .helpers import smooth_volumes

TRUE_VAR = 0.25


@pytest.fixture(scope="module")
def noisy_targets() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    signal = smooth_volumes(10, 32, g)
    return signal + math.sqrt(TRUE_VAR) * torch.randn(signal.shape, generator=g)


def ngm(**params: object) -> NoiseGenerationModule:
    model = build_component("noise_model", {"name": "ngm", **params})
    assert isinstance(model, NoiseGenerationModule)
    return model


def test_paper_rates_map_to_cube_sides_on_32_grid() -> None:
    assert [side_for_rate(r, 32) for r in (0.084, 0.178, 0.244, 0.422)] == [14, 18, 20, 24]
    assert rate_for_side(20, 32) == pytest.approx(0.244, abs=5e-4)
    assert side_for_rate(0.244, 64) == 40  # same fraction on a bigger box
    assert side_for_rate(0.0, 32) == 0
    with pytest.raises(ValueError, match="fraction"):
        side_for_rate(24.4, 32)


def test_box_sides_follow_rate_or_explicit_side() -> None:
    assert ngm().box_sides((32, 32, 32)) == (20, 20, 20)
    assert ngm(filter_rate=0.084).box_sides((32, 32, 48)) == (14, 14, 21)
    assert ngm(cube_side=12, filter_rate=0.9).box_sides((32, 32, 8)) == (12, 12, 8)
    with pytest.raises(ConfigError):
        build_component("noise_model", {"name": "ngm", "filter_rate": 24.4})


def test_highpass_mask_zeroes_the_box_and_is_hermitian() -> None:
    mask = highpass_mask((32, 32, 32), (20, 20, 20))
    assert mask[0, 0, 0] == 0 and mask[16, 16, 16] == 1  # DC removed, Nyquist corner kept
    # fully-inside frequencies (|m| < 10 on every axis) are zeroed: 19^3 of them
    assert int((mask == 0).sum()) == 19**3
    flipped = torch.roll(torch.flip(mask, dims=(0, 1, 2)), shifts=(1, 1, 1), dims=(0, 1, 2))
    assert torch.equal(mask, flipped)  # M(f) == M(-f): the filtered volume stays real


def test_compensated_estimate_within_10_percent(noisy_targets: torch.Tensor) -> None:
    model = ngm(compensate=True)
    model.fit(noisy_targets)
    assert model.sigma2 == pytest.approx(TRUE_VAR, rel=0.10)


def test_uncompensated_estimate_is_passed_fraction_of_truth(noisy_targets: torch.Tensor) -> None:
    model = ngm(compensate=False)
    model.fit(noisy_targets)
    passed = model.state()["passed_fraction"]
    assert 0.70 < passed < 0.78
    assert model.sigma2 == pytest.approx(TRUE_VAR * passed, rel=0.10)


def test_combine_modes(noisy_targets: torch.Tensor) -> None:
    n = noisy_targets.shape[0]
    estimates = {}
    for combine in ("mean_variance", "variance_of_mean", "mean_of_draws"):
        model = ngm(compensate=True, combine=combine)
        model.fit(noisy_targets)
        estimates[combine] = model.sigma2
    assert estimates["mean_variance"] == pytest.approx(TRUE_VAR, rel=0.10)
    # averaging N independent noise volumes shrinks their variance about N times
    assert estimates["variance_of_mean"] == pytest.approx(TRUE_VAR / n, rel=0.2)
    assert estimates["mean_of_draws"] == pytest.approx(estimates["mean_variance"] / n, rel=1e-6)


def test_mean_of_draws_adds_about_one_nth_of_the_variance(noisy_targets: torch.Tensor) -> None:
    zeros = torch.zeros(4, 1, 32, 32, 32)
    added = {}
    for combine in ("mean_variance", "mean_of_draws"):
        model = ngm(compensate=True, combine=combine)
        model.fit(noisy_targets)
        added[combine] = float(model(zeros, torch.Generator().manual_seed(3)).var())
    ratio = added["mean_variance"] / added["mean_of_draws"]
    assert ratio == pytest.approx(noisy_targets.shape[0], rel=0.05)


def test_noise_is_deterministic_under_a_generator(noisy_targets: torch.Tensor) -> None:
    model = ngm()
    model.fit(noisy_targets)
    x = torch.zeros(2, 1, 16, 16, 16)
    a = model(x, torch.Generator().manual_seed(7))
    b = model(x, torch.Generator().manual_seed(7))
    c = model(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.mean()) == pytest.approx(0.0, abs=0.02)  # zero mean noise


def test_unfitted_ngm_refuses_and_state_reports_fit(noisy_targets: torch.Tensor) -> None:
    model = NoiseGenerationModule(NGMConfig(n_samples=5, refit_every=3))
    assert model.needs_target and model.n_fit_samples == 5 and model.refit_every == 3
    with pytest.raises(RuntimeError, match="fit"):
        model(torch.zeros(1, 1, 8, 8, 8))
    model.fit(noisy_targets[:5])
    state = model.state()
    assert state["cube_side"] == 20 and state["n_fits"] == 1
    assert state["box_rate"] == pytest.approx(0.2441, abs=1e-3)
    assert len(state["per_sample_sigma2"]) == 5
    assert NoiseGenerationModule().refit_every is None  # 0 means fit once


@pytest.mark.parametrize(("source_var", "holds"), [(0.04, True), (0.64, False)])
def test_premise_compares_source_and_target_by_the_same_estimate(source_var: float, holds: bool) -> None:
    """NGM's premise (a cleaner source than target) measured with the target's own high-pass estimate."""
    g = torch.Generator().manual_seed(1)
    signal_t, signal_s = smooth_volumes(10, 32, g), smooth_volumes(10, 32, g)
    target = signal_t + math.sqrt(TRUE_VAR) * torch.randn(signal_t.shape, generator=g)
    source = signal_s + math.sqrt(source_var) * torch.randn(signal_s.shape, generator=g)
    model = ngm(combine="variance_of_mean")  # the premise ignores combine: mean per-sample variances
    assert model.premise is None and "premise_holds" not in model.state()
    model.fit(target)
    model.measure_source(source)
    premise = model.premise
    assert premise is not None and premise.holds is holds
    passed = model.estimate.passed_fraction  # both estimates see the same box: white-noise power x passed
    assert premise.target_sigma2 == pytest.approx(TRUE_VAR * passed, rel=0.1)
    assert premise.source_sigma2 == pytest.approx(source_var * passed, rel=0.1)
    state = model.state()
    assert state["premise_holds"] is holds and state["source_sigma2"] == premise.source_sigma2
    warning = premise.warning()
    assert (warning is None) is holds
    if warning:
        assert "\n" not in warning and "premise_holds = false" in warning
    fresh = ngm(combine="variance_of_mean")
    fresh.load_state_dict(model.state_dict())  # the source measurement travels in checkpoints
    assert fresh.state() == state

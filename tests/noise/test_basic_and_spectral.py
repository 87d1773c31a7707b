"""``none``, ``gaussian`` and ``spectral_ngm``: the last must reproduce a coloured noise's radial spectrum."""

from __future__ import annotations

import pytest
import torch

from voxuda.api import build_component
from voxuda.noise.fourier import radial_frequency, radial_power
from voxuda.noise.spectral import SpectralNoise

from .helpers import coloured_noise, smooth_volumes

SIZE = 32


def test_none_is_identity() -> None:
    model = build_component("noise_model", "none")
    x = torch.randn(2, 1, 8, 8, 8)
    assert model(x, torch.Generator().manual_seed(0)) is x
    assert not model.needs_target and model.state() == {"sigma2": 0.0}


def test_gaussian_fixed_sigma_and_snr() -> None:
    x = 3.0 * torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    fixed = build_component("noise_model", {"name": "gaussian", "sigma": 0.5})
    noise = fixed(x, torch.Generator().manual_seed(1)) - x
    assert float(noise.var()) == pytest.approx(0.25, rel=0.05)
    by_snr = build_component("noise_model", {"name": "gaussian", "snr": 0.5})
    noise = by_snr(x, torch.Generator().manual_seed(1)) - x
    assert float(noise.var()) == pytest.approx(float(x.var()) / 0.5, rel=0.05)
    assert torch.equal(fixed(x, torch.Generator().manual_seed(4)), fixed(x, torch.Generator().manual_seed(4)))


def _ramp_power() -> torch.Tensor:
    """A coloured (high-frequency heavy) spectrum, like back-projected noise: 0.05 + 2 |f|."""
    return 0.05 + 2.0 * radial_frequency((SIZE,) * 3)


@pytest.fixture(scope="module")
def fitted() -> tuple[SpectralNoise, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    noise = coloured_noise(10, SIZE, g, _ramp_power())
    model = build_component("noise_model", {"name": "spectral_ngm", "n_samples": 10})
    model.fit(smooth_volumes(10, SIZE, g) + noise)
    return model, noise


def test_synthesised_spectrum_matches_coloured_noise(fitted: tuple[SpectralNoise, torch.Tensor]) -> None:
    """Stated tolerance: every full shell between the cut-off and Nyquist (0.3125-0.5 cycles/voxel) within
    8 % of the true noise power (16 synthesised draws against 64 true ones). The corner shells beyond 0.5
    hold a handful of frequencies each, so their power is too noisy to test per shell."""
    model, _ = fitted
    synth = model(torch.zeros(16, 1, SIZE, SIZE, SIZE), torch.Generator().manual_seed(5))
    radii, synth_power = radial_power(synth)
    _, true_power = radial_power(coloured_noise(64, SIZE, torch.Generator().manual_seed(9), _ramp_power()))
    shells = (radii >= model.cutoff) & (radii <= 0.5)
    assert int(shells.sum()) >= 6
    rel = (synth_power[shells] / true_power[shells] - 1).abs()
    assert float(rel.max()) < 0.08, rel
    # a white model of the same variance would be far off at both ends of the band
    white = true_power[shells].mean()
    assert float((white / true_power[shells] - 1).abs().max()) > 0.2


def test_low_shells_are_extrapolated_flat_or_zero(fitted: tuple[SpectralNoise, torch.Tensor]) -> None:
    model, noise = fitted
    assert model.power is not None and model.radii is not None
    low = model.radii < model.cutoff
    first = int((~low).nonzero()[0])
    assert torch.allclose(model.power[low], model.power[first:first + 2].mean().expand(int(low.sum())))
    zero = build_component("noise_model", {"name": "spectral_ngm", "low_shells": "zero"})
    zero.fit(noise)
    assert zero.power is not None and float(zero.power[low].abs().max()) == 0.0


def test_spectral_sigma2_is_the_synthesised_variance(fitted: tuple[SpectralNoise, torch.Tensor]) -> None:
    model, _ = fitted
    synth = model(torch.zeros(8, 1, SIZE, SIZE, SIZE), torch.Generator().manual_seed(2))
    assert float(synth.var()) == pytest.approx(model.sigma2, rel=0.03)
    assert model.state()["sigma2"] == model.sigma2
    other = model(torch.zeros(1, 1, 24, 20, 16), torch.Generator().manual_seed(2))  # any box size
    assert other.shape == (1, 1, 24, 20, 16)
    a = model(torch.zeros(1, 1, 16, 16, 16), torch.Generator().manual_seed(3))
    assert torch.equal(a, model(torch.zeros(1, 1, 16, 16, 16), torch.Generator().manual_seed(3)))

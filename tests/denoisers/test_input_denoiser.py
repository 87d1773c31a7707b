"""The test-time input denoiser: one builder for evaluation, the benchmark, segment and validation."""

from __future__ import annotations

import pytest
import torch

from voxuda.config import ComponentRef
from voxuda.denoisers import GaussianDenoiser, build_input_denoiser, input_denoiser_ref
from voxuda.errors import ConfigError


def test_plain_identity_means_no_transform() -> None:
    for ref in ("identity", {"name": "identity"}, ComponentRef("identity")):
        assert build_input_denoiser(ref) is None


def test_overrides_set_parameters_or_pick_another_denoiser() -> None:
    denoiser = build_input_denoiser({"name": "gaussian", "truncate": 2.0}, {"sigma": 0.5})
    assert isinstance(denoiser, GaussianDenoiser)
    assert (denoiser.config.sigma, denoiser.config.truncate) == (0.5, 2.0)
    assert input_denoiser_ref("identity", {"name": "gaussian"}) == ComponentRef("gaussian")
    x = torch.randn(1, 1, 6, 6, 6)
    assert not torch.equal(denoiser(x), x)


def test_identity_with_parameters_is_an_error_not_a_silent_identity() -> None:
    with pytest.raises(ConfigError, match="denoiser 'identity': unknown key 'sigma'"):
        build_input_denoiser("identity", {"sigma": 1.0})

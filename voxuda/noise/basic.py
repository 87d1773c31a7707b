"""The two noise models that need no target statistics: ``none`` and ``gaussian``."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from voxuda.checks import positive_or_none
from voxuda.config import help_field
from voxuda.noise.base import NoiseModelBase, check_volumes, gaussian_like


@attrs.frozen
class NoNoiseConfig:
    """No parameters: the source is left unchanged (the "no NGM" ablation)."""


class NoNoise(NoiseModelBase):
    """Returns its input unchanged; the consistency loss then compares identical inputs and is zero."""

    def __init__(self, config: NoNoiseConfig | None = None) -> None:
        self.config = config or NoNoiseConfig()

    def state(self) -> dict[str, Any]:
        return {"sigma2": 0.0}


@attrs.frozen
class GaussianNoiseConfig:
    """White zero-mean Gaussian noise of a fixed sigma, or of a variance set relative to each volume."""

    sigma: float = help_field(0.5, help="standard deviation of the added noise (used when snr is not set)",
                              validator=positive_or_none)
    snr: float | None = help_field(
        None, help="if set, noise variance = variance of each source volume / snr (overrides sigma)",
        validator=positive_or_none)


class GaussianNoise(NoiseModelBase):
    """Adds ``N(0, sigma^2)`` per voxel; with ``snr`` the variance follows each volume's own variance."""

    def __init__(self, config: GaussianNoiseConfig | None = None) -> None:
        self.config = config or GaussianNoiseConfig()

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_volumes(x, "gaussian noise")
        noise = gaussian_like(x, generator)
        if self.config.snr is None:
            return x + self.config.sigma * noise
        dims = tuple(range(1, x.ndim))  # per volume, over channels and space
        var = x.detach().var(dim=dims, keepdim=True, unbiased=False)
        return x + torch.sqrt(var / self.config.snr) * noise

    def state(self) -> dict[str, Any]:
        if self.config.snr is None:
            return {"sigma2": self.config.sigma**2}
        return {"snr": self.config.snr}

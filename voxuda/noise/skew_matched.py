"""``skew_matched``: noise in the source's own colour, as much as makes the source's particles as faint as the
target's, judged by a label-free moment (the skewness of the voxel values).

Why (docs/vox_uda.md, "NGM on the appearance track"): the networks see z-scored volumes. When both domains are
noise-dominated and their noise lives in the particles' frequency band (the Fourier-model domains keep 0.2 %
of their variance above NGM's cut-off), a noise-level shift shows up as fainter particles in units of the
volume's standard deviation, not as more high-frequency power: NGM's high-pass estimate then differs by 8 %
between domains whose SNR differs 7.6-fold, and its white noise imitates nothing.

The estimate. Sparse particles of one sign skew the voxel values. Gaussian noise adds nothing to the third
cumulant, so adding independent Gaussian noise of variance ``v`` (in units of the volume's variance) and
re-standardising multiplies the skewness by ``(1 + v)^(-3/2)``. Matching the target's mean skewness ``g_t``
from the source's ``g_s`` therefore needs ``v = (g_s / g_t)^(2/3) - 1`` (same sign, ``|g_s| > |g_t|``;
otherwise ``v = 0`` and the premise fails: the source is not the domain with the stronger particles). Both
skewnesses come from unlabelled volumes: the target's in :meth:`fit`, the source's in :meth:`measure_source`
(Vox-UDA calls it before the first step). The noise has the source's mean radial power spectrum (noise
dominated when particles are sparse), so the added noise has the colour the source's noise already has, and
each noisy volume is re-standardised to its clean volume's mean and standard deviation, as the data are.

It assumes the domains share content (particle density and sizes): the appearance track's premise. On a
content shift the skewness also moves with crowding and particle size, and ``v`` says nothing about noise.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from torch import Tensor

from voxuda.config import help_field
from voxuda.noise.base import NoiseModel, check_volumes
from voxuda.noise.fourier import power_on_grid, radial_power, shaped_noise
from voxuda.noise.ngm import _check_positive


def _check_cap(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"max_variance must be a positive number, got {value}")


@attrs.frozen
class SkewMatchedNoiseConfig:
    """Source-coloured Gaussian noise, its variance matched to the target's skewness (our design [I])."""

    n_samples: int = help_field(
        40, help="target (and source) volumes for the skewness estimates; a volume's skewness is noisy, "
        "so more than NGM's 10 [I]", validator=_check_positive)
    max_variance: float = help_field(
        20.0, help="cap on the added variance v (units of a volume's variance): a near-zero target "
        "skewness would otherwise ask for unbounded noise", validator=_check_cap)


@attrs.frozen
class SkewPremise:
    """The source's particles stand out more than the target's (same sign, larger absolute skewness)."""

    source_skewness: float
    target_skewness: float

    @property
    def holds(self) -> bool:
        same_sign = self.source_skewness * self.target_skewness > 0
        return same_sign and abs(self.source_skewness) > abs(self.target_skewness)

    def warning(self) -> str | None:
        if self.holds:
            return None
        return (f"skew_matched premise fails: the source's skewness {self.source_skewness:.3g} is not a "
                f"stronger version of the target's {self.target_skewness:.3g}, so no noise is added "
                "(run.json: components.noise.state.premise_holds = false)")


def mean_skewness(volumes: Tensor) -> float:
    """Mean over volumes (and channels) of the skewness of the voxel values, in float64."""
    flat = volumes.detach().double().reshape(-1, math.prod(volumes.shape[-3:]))
    centred = flat - flat.mean(dim=1, keepdim=True)
    variance = centred.pow(2).mean(dim=1).clamp_min(1e-24)
    return float((centred.pow(3).mean(dim=1) / variance.pow(1.5)).mean())


def added_variance(source_skewness: float, target_skewness: float, cap: float) -> float:
    """``v = (g_s / g_t)^(2/3) - 1``, capped at ``cap``; 0 when the premise does not hold."""
    if not SkewPremise(source_skewness, target_skewness).holds:
        return 0.0
    return min((source_skewness / target_skewness) ** (2.0 / 3.0) - 1.0, cap)


class SkewMatchedNoise(NoiseModel):
    """Adds source-coloured noise until the source's skewness matches the target's, then re-standardises."""

    needs_target = True

    def __init__(self, config: SkewMatchedNoiseConfig | None = None) -> None:
        self.config = config or SkewMatchedNoiseConfig()
        self.n_fit_samples = self.config.n_samples
        self.refit_every = None
        self.target_skewness: float | None = None
        self.source_skewness: float | None = None
        self.radii: Tensor | None = None  # the source's radial spectrum: shell radii (cycles/voxel)
        self.power: Tensor | None = None  # and power per shell
        self.n_fits = 0
        self._filters: dict[tuple[tuple[int, ...], str], Tensor] = {}

    # -- estimates ---------------------------------------------------------------------------------------
    def fit(self, target_volumes: Tensor) -> None:
        check_volumes(target_volumes, "skew_matched fit")
        self.target_skewness = mean_skewness(target_volumes)
        self.n_fits += 1

    def measure_source(self, source_volumes: Tensor) -> None:
        """The source's skewness and mean radial power spectrum (the colour of the noise to add)."""
        check_volumes(source_volumes, "skew_matched source measurement")
        self.source_skewness = mean_skewness(source_volumes)
        vols = source_volumes.detach().float()
        vols = vols - vols.mean(dim=(-3, -2, -1), keepdim=True)
        self.radii, power = radial_power(vols)
        self.power = power / power.mean().clamp_min(1e-30)  # shape only: the variance is set by v
        self._filters.clear()

    @property
    def premise(self) -> SkewPremise | None:
        if self.target_skewness is None or self.source_skewness is None:
            return None
        return SkewPremise(self.source_skewness, self.target_skewness)

    @property
    def fitted(self) -> bool:
        return self.target_skewness is not None

    @property
    def variance(self) -> float:
        """The added variance ``v`` in units of a volume's variance (0 when the premise fails)."""
        if self.target_skewness is None or self.source_skewness is None:
            raise RuntimeError("skew_matched: needs fit(target_volumes) and measure_source(source_volumes) "
                               "before adding noise (Vox-UDA does both in on_train_start)")
        return added_variance(self.source_skewness, self.target_skewness, self.config.max_variance)

    # -- noise -------------------------------------------------------------------------------------------
    def _amplitude(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """``sqrt(P(|f|))`` of the source's spectrum on a grid of ``shape``, scaled to unit voxel variance."""
        assert self.radii is not None and self.power is not None
        key = (tuple(shape), str(device))
        if key not in self._filters:
            power = power_on_grid(self.radii, self.power, shape)
            self._filters[key] = (power / power.mean().clamp_min(1e-30)).sqrt().to(device)
        return self._filters[key]

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_volumes(x, "skew_matched")
        v = self.variance
        if v <= 0.0:
            return x
        dims = (-3, -2, -1)
        noise = shaped_noise(x.shape, self._amplitude(tuple(x.shape[-3:]), x.device), generator, x)
        mean, std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True)
        noisy = x + math.sqrt(v) * std * noise
        noisy_mean, noisy_std = noisy.mean(dim=dims, keepdim=True), noisy.std(dim=dims, keepdim=True)
        return (noisy - noisy_mean) / noisy_std.clamp_min(1e-12) * std + mean

    # -- records -----------------------------------------------------------------------------------------
    @property
    def sigma2(self) -> float:
        return self.variance

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_fits": self.n_fits, "target_skewness": self.target_skewness,
                               "source_skewness": self.source_skewness}
        premise = self.premise
        if premise is not None:
            out.update(sigma2=self.variance, premise_holds=premise.holds)
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"n_fits": self.n_fits, "target_skewness": self.target_skewness,
                                 "source_skewness": self.source_skewness}
        if self.radii is not None and self.power is not None:
            state.update(radii=self.radii.tolist(), power=self.power.tolist())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_fits = int(state.get("n_fits", 0))
        self.target_skewness = state.get("target_skewness")
        self.source_skewness = state.get("source_skewness")
        self._filters.clear()
        if "power" in state:
            self.radii = torch.tensor(state["radii"], dtype=torch.float32)
            self.power = torch.tensor(state["power"], dtype=torch.float32)
        else:
            self.radii = self.power = None


__all__ = ["SkewMatchedNoise", "SkewMatchedNoiseConfig", "SkewPremise", "added_variance", "mean_skewness"]

"""Vox-UDA's noise generation module (NGM): white Gaussian noise with the target's estimated variance.

Recipe (docs/sources.md, the reimplementation): sample N target volumes (N = 10 [R]); 3D FFT; zero the
centred low-frequency box (filter rate 24.4 % [R] = a cube of side 20 on 32^3 [I, strong]); inverse FFT;
estimate the variance sigma^2 of what is left; add fresh ``N(0, sigma^2)`` to each source volume.

Ambiguities exposed as options (see docs/vox_uda.md):

- ``combine``: how the N estimates become one. ``mean_variance`` (default, [I] safest): mean of the
  per-sample variances. ``variance_of_mean`` ([R] README): variance of the averaged high-passed volumes;
  for independent noise this is about sigma^2 / N. ``mean_of_draws`` ([R] code): the added noise is the
  average of N Gaussian draws, one per sample variance, so its variance is mean(sigma_i^2) / N. It is drawn
  in closed form as one Gaussian of that variance (a sum of independent Gaussians is Gaussian).
- ``compensate``: the high-pass keeps only part of the spectrum, so for white noise its variance is
  ``passed_fraction * sigma^2``; compensation divides by that fraction. Default False: the reimplementation
  uses the high-pass variance as is ([R]), and the prototype found the compensated (white-noise) estimate
  overstates the reconstructed target noise (sigma^2 0.87 of a unit-variance volume; docs/sources.md,
  "Prototype measurements").

**The premise.** NGM makes a *clean* source look like a *noisier* target.
:meth:`NoiseGenerationModule.measure_source` runs the same high-pass estimate on source volumes, and
:attr:`~NoiseGenerationModule.premise` compares the mean per-sample high-pass variances of the two domains
(independent of ``combine``): when the source's is not below the target's, the added noise has nothing to
imitate; ``state()`` then says ``premise_holds: false`` and Vox-UDA prints a one-line warning. (The adaptation
review found the quick preset's source to be the noisiest domain, measured SNR 0.013 against 0.016-0.053.)
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from voxuda.checks import at_least_one, fraction_below_one, non_negative, non_negative_or_none
from voxuda.config import help_field
from voxuda.noise.base import NoiseModelBase, check_volumes, gaussian_like
from voxuda.noise.fourier import highpass, rate_for_side, side_for_rate

Combine = Literal["mean_variance", "variance_of_mean", "mean_of_draws"]


@attrs.frozen
class NGMConfig:
    """Target-noise-matched white Gaussian noise (Vox-UDA's NGM)."""

    n_samples: int = help_field(
        10, help="target volumes sampled for the estimate; 10 [R] (ablated 5/10/15/20)",
        validator=at_least_one)
    filter_rate: float = help_field(
        0.244, help="fraction of the spectrum zeroed (low-frequency box); 0.244 [R] = side 20 on 32^3 [I]. "
        "Mapped to side round(rate^(1/3) * n) per axis", validator=fraction_below_one)
    cube_side: int | None = help_field(
        None, help="if set, side of the zeroed box in voxels on every axis (overrides filter_rate)",
        validator=non_negative_or_none)
    combine: Combine = help_field(
        "mean_variance",
        help="mean_variance [I] | variance_of_mean [R README] | mean_of_draws [R code, ~1/N variance]")
    compensate: bool = help_field(
        False, help="divide the high-pass variance by the passed fraction of the spectrum (assumes white "
        "noise); off [R]: the prototype found it overstates coloured target noise")
    refit_every: int = help_field(0, help="re-estimate from fresh target samples every K steps; 0 = once",
                                  validator=non_negative)


@attrs.frozen
class NGMEstimate:
    """What one fit measured; kept for ``state()`` and tests."""

    sigma2: float
    per_sample_sigma2: tuple[float, ...]
    sides: tuple[int, ...]
    passed_fraction: float
    compensation: float

    @property
    def mean_sample_sigma2(self) -> float:
        """Mean of the per-sample high-pass variances: the domain's noise level, whatever ``combine``."""
        return sum(self.per_sample_sigma2) / len(self.per_sample_sigma2)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> NGMEstimate | None:
        if raw is None:
            return None
        return cls(sigma2=float(raw["sigma2"]), per_sample_sigma2=tuple(raw["per_sample_sigma2"]),
                   sides=tuple(raw["sides"]), passed_fraction=float(raw["passed_fraction"]),
                   compensation=float(raw["compensation"]))


@attrs.frozen
class NoisePremise:
    """NGM's premise on one run: the source is cleaner than the target (by the same high-pass estimate)."""

    source_sigma2: float
    target_sigma2: float

    @property
    def holds(self) -> bool:
        return self.source_sigma2 < self.target_sigma2

    def warning(self) -> str | None:
        if self.holds:
            return None
        return (f"NGM premise fails: the source's high-pass noise variance {self.source_sigma2:.3g} is not "
                f"below the target's {self.target_sigma2:.3g}, so noise added to the source imitates nothing "
                "(run.json: components.noise.state.premise_holds = false)")


def estimate_noise_variance(volumes: Tensor, sides: tuple[int, ...], combine: Combine,
                            compensate: bool) -> NGMEstimate:
    """The NGM estimate from target volumes ``(N, C, D, H, W)`` (channels are treated as more samples)."""
    check_volumes(volumes, "NGM fit")
    flat = volumes.detach().float().reshape(-1, *volumes.shape[-3:])
    filtered, mask = highpass(flat, sides)
    passed = float((mask**2).mean().item())  # white-noise power kept by the filter
    if passed <= 0:
        raise ValueError(f"NGM: the high-pass box {sides} covers the whole spectrum; lower the filter rate")
    compensation = 1.0 / passed if compensate else 1.0
    per_sample = filtered.var(dim=(-3, -2, -1), unbiased=False) * compensation
    if combine == "variance_of_mean":
        sigma2 = float(filtered.mean(dim=0).var(unbiased=False).item()) * compensation
    elif combine == "mean_of_draws":
        sigma2 = float(per_sample.mean().item()) / flat.shape[0]
    else:
        sigma2 = float(per_sample.mean().item())
    return NGMEstimate(sigma2=sigma2, per_sample_sigma2=tuple(float(v) for v in per_sample.tolist()),
                       sides=tuple(sides), passed_fraction=passed, compensation=compensation)


class NoiseGenerationModule(NoiseModelBase):
    """Adds ``N(0, sigma^2)`` to source volumes, sigma^2 estimated from target volumes by :meth:`fit`."""

    needs_target = True

    def __init__(self, config: NGMConfig | None = None) -> None:
        self.config = config or NGMConfig()
        self.n_fit_samples = self.config.n_samples
        self.refit_every = self.config.refit_every or None
        self.estimate: NGMEstimate | None = None
        self.source_estimate: NGMEstimate | None = None
        self.n_fits = 0
        self._grid: tuple[int, ...] = ()

    def box_sides(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Side of the zeroed box on each axis of a grid of ``shape`` (D, H, W)."""
        if self.config.cube_side is not None:
            return tuple(min(self.config.cube_side, n) for n in shape)
        return tuple(side_for_rate(self.config.filter_rate, n) for n in shape)

    def fit(self, target_volumes: Tensor) -> None:
        check_volumes(target_volumes, "NGM fit")
        self._grid = tuple(target_volumes.shape[-3:])
        sides = self.box_sides(self._grid)
        self.estimate = estimate_noise_variance(target_volumes, sides, self.config.combine,
                                                self.config.compensate)
        self.n_fits += 1

    def measure_source(self, source_volumes: Tensor) -> None:
        """Run the target's high-pass estimate on source volumes ``(N, C, D, H, W)``, for :meth:`premise`."""
        check_volumes(source_volumes, "NGM source measurement")
        sides = self.box_sides(tuple(source_volumes.shape[-3:]))
        self.source_estimate = estimate_noise_variance(source_volumes, sides, "mean_variance",
                                                       self.config.compensate)

    @property
    def premise(self) -> NoisePremise | None:
        """Source vs target noise, once both were measured (None before)."""
        if self.estimate is None or self.source_estimate is None:
            return None
        return NoisePremise(source_sigma2=self.source_estimate.mean_sample_sigma2,
                            target_sigma2=self.estimate.mean_sample_sigma2)

    @property
    def fitted(self) -> bool:
        return self.estimate is not None

    @property
    def sigma2(self) -> float:
        if self.estimate is None:
            raise RuntimeError("NGM: call fit(target_volumes) before adding noise (the method does this "
                               "in on_train_start)")
        return self.estimate.sigma2

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_volumes(x, "NGM")
        return x + math.sqrt(self.sigma2) * gaussian_like(x, generator)

    def state_dict(self) -> dict[str, Any]:
        estimate = self.estimate.to_dict() if self.estimate is not None else None
        source = self.source_estimate.to_dict() if self.source_estimate is not None else None
        return {"estimate": estimate, "source_estimate": source, "n_fits": self.n_fits,
                "grid": list(self._grid)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.estimate = NGMEstimate.from_dict(state.get("estimate"))
        self.source_estimate = NGMEstimate.from_dict(state.get("source_estimate"))
        self.n_fits = int(state.get("n_fits", 0))
        self._grid = tuple(state.get("grid", ()))

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"combine": self.config.combine, "compensate": self.config.compensate,
                               "n_fits": self.n_fits}
        if self.estimate is not None:
            e = self.estimate
            out.update(sigma2=e.sigma2, per_sample_sigma2=list(e.per_sample_sigma2), box_sides=list(e.sides),
                       passed_fraction=e.passed_fraction, compensation=e.compensation,
                       box_rate=math.prod(e.sides) / math.prod(self._grid) if self._grid else None)
            if len(set(e.sides)) == 1:
                out["cube_side"] = e.sides[0]
        premise = self.premise
        if premise is not None:
            out.update(source_sigma2=premise.source_sigma2, target_sigma2=premise.target_sigma2,
                       premise_holds=premise.holds)
        return out


__all__ = ["NGMConfig", "NGMEstimate", "NoiseGenerationModule", "NoisePremise", "estimate_noise_variance",
           "rate_for_side", "side_for_rate"]

"""``skew_matched``: noise (in the source's own colour, or the target's), as much as makes the source's
particles as faint as the target's, judged by a label-free moment (the skewness of the voxel values).

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

Colour (``colour``). ``"source"`` (the default) adds noise with the source's spectrum: right when the two
domains' noise has one colour (the Fourier-model domains). ``"target"`` is for a target whose noise has
another colour (weighted back-projection puts 29 % of ``appear_insitu``'s variance above NGM's cut-off): the
added noise's power per frequency is ``N(f) = max(a P_t(f) - P_s(f), 0)``, ``P_s`` and ``P_t`` the two
domains' mean power spectra of unit-variance volumes, with ``a`` such that the mean of ``N`` is ``v``. Where
no shell is clipped, the noisy source's spectrum ``(P_s + N) / (1 + v)`` is then the target's, so the skewness
fixes how much noise and the target's spectrum where it goes. Both spectra are label-free.

Spectrum (``spectrum``). ``"radial"`` (the default) measures each domain's mean power per radial shell, an
isotropic colour. Tomograms are not isotropic: single-axis tilting leaves a missing wedge, a double wedge of
Fourier space with no power in either domain (on the appearance track 38 % of the frequencies between 0.05
and 0.45 cycles/voxel hold under a millionth of the power, in source and target alike), and radial noise
puts its share of power there (28 % of the noisy source's power on ``appear_noisier``): noise the target
never has, and less of it where the target's noise is. ``"full"`` measures the mean power at every frequency
of the volumes' own grid instead, so the added noise leaves empty what both domains leave empty
(``scripts/domain_statistics.py --noise-check`` prints the share for both).

It assumes the domains share content (particle density and sizes): the appearance track's premise. On a
content shift the skewness also moves with crowding and particle size, and ``v`` says nothing about noise.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from voxuda.checks import non_negative, one_of, positive, positive_or_none
from voxuda.config import help_field
from voxuda.noise.base import NoiseModelBase, check_volumes
from voxuda.noise.fourier import power_on_grid, radial_power, shaped_noise

Colour = Literal["source", "target"]
Spectrum = Literal["radial", "full"]


@attrs.frozen
class SkewMatchedNoiseConfig:
    """Gaussian noise, its variance matched to the target's skewness, its colour the source's or the
    target's (our design [I])."""

    n_samples: int = help_field(
        40, help="target (and source) volumes for the skewness estimates; a volume's skewness is noisy, "
        "so more than NGM's 10 [I]; 0 = every volume of the target-train (and source-train) split, each "
        "once: the same estimate for every seed [I: a 40-draw estimate flipped sign, docs/vox_uda.md]",
        validator=non_negative)
    colour: Colour = help_field(
        "source", help="spectrum of the added noise: the source's own ('source', when both domains' noise "
        "has one colour) or what makes the noisy source's spectrum the target's ('target') [I]",
        validator=one_of("source", "target"))
    spectrum: Spectrum = help_field(
        "radial", help="how the colour is measured: per radial shell ('radial', isotropic) or at every "
        "frequency of the volumes' grid ('full': keeps what both domains leave empty, such as the missing "
        "wedge, empty; noise only for volumes of the measured shape) [I]",
        validator=one_of("radial", "full"))
    max_variance: float = help_field(
        20.0, help="cap on the added variance v (units of a volume's variance): a near-zero target "
        "skewness would otherwise ask for unbounded noise", validator=positive)
    fixed_variance: float | None = help_field(
        None, help="diagnostic only: add this v instead of the skewness estimate, e.g. the v a simulator's "
        "own SNR implies, to ask whether the estimate limits a method; knowledge of the target, never a "
        "default [I]", validator=positive_or_none)


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


def target_colour_power(source_power: Tensor, target_power: Tensor, variance: float) -> Tensor:
    """``N = max(a P_t - P_s, 0)`` with ``mean(N) = variance``: the noise power that turns the source's
    spectrum into the target's (both grids scaled to mean 1, i.e. unit-variance volumes).

    ``mean(max(a P_t - P_s, 0))`` grows continuously and monotonically with ``a`` from 0 at ``a = 0``, and at
    ``a = 1 + variance`` it is at least ``variance`` (the unclipped sum is exactly ``variance``), so bisection
    on ``[0, 1 + variance]`` finds ``a``.
    """
    ps = source_power.double() / source_power.double().mean().clamp_min(1e-30)
    pt = target_power.double() / target_power.double().mean().clamp_min(1e-30)
    lo, hi = 0.0, 1.0 + variance
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float((mid * pt - ps).clamp_min(0).mean()) < variance:
            lo = mid
        else:
            hi = mid
    return (hi * pt - ps).clamp_min(0).float()


def added_variance(source_skewness: float, target_skewness: float, cap: float) -> float:
    """``v = (g_s / g_t)^(2/3) - 1``, capped at ``cap``; 0 when the premise does not hold."""
    if not SkewPremise(source_skewness, target_skewness).holds:
        return 0.0
    return min((source_skewness / target_skewness) ** (2.0 / 3.0) - 1.0, cap)


class SkewMatchedNoise(NoiseModelBase):
    """Adds noise (the source's colour, or the target's) until the source's skewness matches the target's,
    then re-standardises."""

    needs_target = True

    def __init__(self, config: SkewMatchedNoiseConfig | None = None) -> None:
        self.config = config or SkewMatchedNoiseConfig()
        self.n_fit_samples = self.config.n_samples
        self.refit_every = None
        self.target_skewness: float | None = None
        self.source_skewness: float | None = None
        self.radii: Tensor | None = None  # the source's radial spectrum: shell radii (cycles/voxel)
        self.power: Tensor | None = None  # and power per shell
        self.target_radii: Tensor | None = None  # the target's radial spectrum (colour = "target" only)
        self.target_power: Tensor | None = None
        self.source_grid: Tensor | None = None  # spectrum = "full": the mean power at every frequency
        self.target_grid: Tensor | None = None
        self.n_fits = 0
        self._filters: dict[tuple[tuple[int, ...], str], Tensor] = {}

    # -- estimates ---------------------------------------------------------------------------------------
    def fit(self, target_volumes: Tensor) -> None:
        check_volumes(target_volumes, "skew_matched fit")
        self.target_skewness = mean_skewness(target_volumes)
        if self.config.colour == "target":
            self.target_radii, self.target_power = _shape_of_spectrum(target_volumes)
            if self.config.spectrum == "full":
                self.target_grid = _full_spectrum(target_volumes)
        self._filters.clear()
        self.n_fits += 1

    def measure_source(self, source_volumes: Tensor) -> None:
        """The source's skewness and mean radial power spectrum (the colour of the noise to add)."""
        check_volumes(source_volumes, "skew_matched source measurement")
        self.source_skewness = mean_skewness(source_volumes)
        self.radii, self.power = _shape_of_spectrum(source_volumes)
        if self.config.spectrum == "full":
            self.source_grid = _full_spectrum(source_volumes)
        self._filters.clear()

    @property
    def premise(self) -> SkewPremise | None:
        """None before both measurements, and with ``fixed_variance``: no estimate is used, so there is no
        premise to fail (and no "no noise is added" warning, which would be false)."""
        if (self.target_skewness is None or self.source_skewness is None
                or self.config.fixed_variance is not None):
            return None
        return SkewPremise(self.source_skewness, self.target_skewness)

    @property
    def fitted(self) -> bool:
        return self.target_skewness is not None

    @property
    def variance(self) -> float:
        """The added variance ``v`` in units of a volume's variance (0 when the premise fails), or the
        configured ``fixed_variance`` (a diagnostic) whatever the skewnesses say."""
        if self.target_skewness is None or self.source_skewness is None:
            raise RuntimeError("skew_matched: needs fit(target_volumes) and measure_source(source_volumes) "
                               "before adding noise (Vox-UDA does both in on_train_start)")
        if self.config.fixed_variance is not None:
            return self.config.fixed_variance
        return added_variance(self.source_skewness, self.target_skewness, self.config.max_variance)

    # -- noise -------------------------------------------------------------------------------------------
    def _amplitude(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """``sqrt(N(|f|))`` of the added noise's spectrum on a grid of ``shape``, scaled to unit voxel
        variance: the source's spectrum, or for ``colour = "target"`` the difference that makes the noisy
        source's spectrum the target's (:func:`target_colour_power`)."""
        assert self.radii is not None and self.power is not None
        key = (tuple(shape), str(device))
        if key not in self._filters:
            full = self.config.spectrum == "full"
            power = (_on_grid(self.source_grid, shape, "source") if full
                     else power_on_grid(self.radii, self.power, shape))
            if self.config.colour == "target":
                if self.target_radii is None or self.target_power is None:
                    raise RuntimeError("skew_matched (colour = 'target'): fit(target_volumes) measures the "
                                       "target's spectrum; call it before adding noise")
                target = (_on_grid(self.target_grid, shape, "target") if full
                          else power_on_grid(self.target_radii, self.target_power, shape))
                power = target_colour_power(power, target, self.variance)
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
        if self.config.fixed_variance is not None:  # say so beside sigma2: it is not the estimate
            out.update(sigma2=self.config.fixed_variance, fixed_variance=self.config.fixed_variance)
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"n_fits": self.n_fits, "target_skewness": self.target_skewness,
                                 "source_skewness": self.source_skewness}
        if self.radii is not None and self.power is not None:
            state.update(radii=self.radii.tolist(), power=self.power.tolist())
        if self.target_radii is not None and self.target_power is not None:
            state.update(target_radii=self.target_radii.tolist(), target_power=self.target_power.tolist())
        for name, grid in (("source_grid", self.source_grid), ("target_grid", self.target_grid)):
            if grid is not None:
                state[name] = grid.clone()
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
        if "target_power" in state:
            self.target_radii = torch.tensor(state["target_radii"], dtype=torch.float32)
            self.target_power = torch.tensor(state["target_power"], dtype=torch.float32)
        else:
            self.target_radii = self.target_power = None
        self.source_grid = _grid_state(state.get("source_grid"))
        self.target_grid = _grid_state(state.get("target_grid"))


def _grid_state(value: Any) -> Tensor | None:
    return None if value is None else torch.as_tensor(value, dtype=torch.float32).clone()


def _full_spectrum(volumes: Tensor) -> Tensor:
    """Mean power at every frequency of mean-removed ``volumes`` ``(N, C, D, H, W)``, scaled to mean 1: the
    colour with its anisotropy (a missing wedge stays empty). Real volumes give ``P(f) = P(-f)``, so noise
    shaped by its square root is real."""
    vols = volumes.detach().float().reshape(-1, *volumes.shape[-3:])
    vols = vols - vols.mean(dim=(-3, -2, -1), keepdim=True)
    power = (torch.fft.fftn(vols, dim=(-3, -2, -1)).abs() ** 2).mean(dim=0)
    return (power / power.mean().clamp_min(1e-30)).cpu()


def _on_grid(grid: Tensor | None, shape: tuple[int, ...], domain: str) -> Tensor:
    """The measured full spectrum of ``domain``, which colours only volumes of the shape it was measured on
    (a per-frequency spectrum has no radius to interpolate along)."""
    if grid is None:
        raise RuntimeError(f"skew_matched (spectrum = 'full'): the {domain}'s spectrum is not measured; "
                           "fit(target_volumes) and measure_source(source_volumes) first")
    if tuple(grid.shape) != tuple(shape):
        raise ValueError(f"skew_matched (spectrum = 'full'): the spectra were measured on "
                         f"{'x'.join(map(str, grid.shape))} volumes and cannot colour "
                         f"{'x'.join(map(str, shape))} ones; use spectrum = 'radial' for mixed shapes")
    return grid


def _shape_of_spectrum(volumes: Tensor) -> tuple[Tensor, Tensor]:
    """Mean radial power spectrum of mean-removed ``volumes``, scaled to mean 1 over the shells: its shape
    only (the amount of noise is set by ``v``)."""
    vols = volumes.detach().float()
    vols = vols - vols.mean(dim=(-3, -2, -1), keepdim=True)
    radii, power = radial_power(vols)
    return radii, power / power.mean().clamp_min(1e-30)


__all__ = ["SkewMatchedNoise", "SkewMatchedNoiseConfig", "SkewPremise", "added_variance", "mean_skewness",
           "target_colour_power"]

"""How probabilities become labels at test time: argmax, or a foreground threshold calibrated to a prior.

Why: on the content track's crowded targets the source-only model predicts about a quarter of the target's
foreground (insitu_ribosome, seed 0: 1.8 % of voxels against 7.8 %, ``scripts/foreground_calibration.py``),
and lowering its foreground threshold raises Dice steadily; argmax keeps the source's occupancy. A user who
knows roughly how crowded the sample is (``evaluation.fg_prior = [lo, hi]``) can have the decision follow
that instead: the threshold on ``p_fg = 1 - p(background)`` is chosen on the *unlabelled* target train split
so that the predicted foreground fraction there is the argmax fraction clamped into ``[lo, hi]``, then
applied unchanged to every volume evaluated. When argmax's fraction lies inside the range the decision stays
argmax; outside, the fraction is moved to the nearer bound. No target label is read.

Without a user range, ``evaluation.source_prior = true`` aims the decision at the labelled source train
split's foreground fraction (the point range ``[f, f]``, :func:`source_fraction_prior`): the assumption the
``prior`` pseudo-label selection already makes without ``fg_prior`` (target occupancy as the source's), so
a method trained on pseudo-labels of that fraction is also read out at it. It suits a pure appearance shift
(same particles, same crowding), not a content shift.

Without a range from anyone, ``evaluation.prior_estimate = "em"`` estimates the target's foreground fraction
from the model's own probabilities, label-free: the EM re-estimation of class priors under a prior (label)
shift of Saerens, Latinne and Decaestecker (Neural Computation 14, 2002). The posteriors are re-weighted by
the ratio of the current target prior to the prior they were learned under, the target prior becomes the
mean re-weighted posterior, and the two steps repeat to a fixed point (the maximum-likelihood prior of the
unlabelled target voxels when the class-conditional appearance is the source's). The prior the posteriors
carry is measured as the network's mean ``p_fg`` on the held-out source split (not the label fraction), so
on source-like data the estimate is that mean and the decision stays near argmax; the threshold is then aimed
at the estimate as at a point range. It suits an occupancy shift (the content track's crowded targets), and
its premise fails where the appearance changes too: then the posteriors are not the source's.
``"em_calibrated"`` first calibrates the posteriors on the labelled held-out source by bias-corrected
temperature scaling (a scale and a bias on the foreground log-odds, fitted by log-loss), as Alexandari,
Kundaje and Shrikumar (ICML 2020) found EM needs with modern networks, whose posteriors are not calibrated;
the source prior is then the mean calibrated ``p_fg`` there, their strategy as well.

This is the test-time counterpart of the ``prior`` pseudo-label selection (``methods/pseudo_labels.py``),
whose foreground/class helpers it reuses, so training and evaluation rank voxels the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
import torch
from torch import Tensor, nn

from voxuda.checks import prior_range_problem
from voxuda.engine.inference import InputTransform, iter_probabilities
from voxuda.engine.run_config import PRIOR_ESTIMATORS
from voxuda.errors import ConfigError
from voxuda.methods.pseudo_labels import foreground_class, foreground_fraction, foreground_probability

#: At most this many foreground probabilities are kept for the quantile (an even subsample of the rest).
MAX_CALIBRATION_VOXELS = 4_000_000


@attrs.frozen
class PriorThreshold:
    """Foreground where ``p_fg > threshold``, labelled with the most probable non-background class; with
    ``threshold = None`` (argmax's fraction already lay in the prior) plain argmax."""

    threshold: float | None
    fg_prior: tuple[float, float]
    argmax_fraction: float  # foreground fraction argmax gave on the calibration volumes
    target_fraction: float  # the fraction the threshold was chosen to give there
    origin: str = "user range"  # or "source fraction" (evaluation.source_prior), "em estimate"
    estimate: PriorEstimate | None = None  # how an estimated prior was reached (evaluation.prior_estimate)

    def __call__(self, probs: Tensor) -> Tensor:
        if self.threshold is None:
            return probs.argmax(dim=1)
        labels = foreground_class(probs)
        return torch.where(foreground_probability(probs) > self.threshold, labels, torch.zeros_like(labels))

    def record(self) -> dict[str, Any]:
        """What ``eval_*.json`` keeps of the decision."""
        record: dict[str, Any] = {
            "rule": "prior_threshold", "fg_prior": list(self.fg_prior), "origin": self.origin,
            "threshold": self.threshold, "argmax_fraction": self.argmax_fraction,
            "target_fraction": self.target_fraction,
        }
        if self.estimate is not None:
            record["estimate"] = attrs.asdict(self.estimate)
        return record


#: EM stops when the prior moves less than this between two iterations, or after EM_MAX_ITER iterations
EM_TOLERANCE = 1e-8
EM_MAX_ITER = 1000


@attrs.frozen
class PriorEstimate:
    """The EM prior estimate and what it started from (kept in ``eval_*.json`` under ``decision``)."""

    method: str
    estimate: float  # the target foreground fraction reached
    source_soft: float  # mean p_fg on the held-out source split: the prior the posteriors carry
    target_soft: float  # mean p_fg on the unlabelled target split (EM's first step)
    iterations: int
    converged: bool
    scale: float = 1.0  # em_calibrated: the fitted 1 / temperature on the foreground log-odds
    bias: float = 0.0  # em_calibrated: the fitted bias on the foreground log-odds


@attrs.frozen
class SourceCalibration:
    """What the held-out source says about the network's posteriors: the prior they carry (``source_soft``)
    and the map applied to every ``p_fg`` before EM (identity for ``em``; ``sigmoid(scale * logit(p) +
    bias)`` for ``em_calibrated``)."""

    source_soft: float
    scale: float = 1.0
    bias: float = 0.0

    def apply(self, p_fg: Tensor) -> Tensor:
        if self.scale == 1.0 and self.bias == 0.0:
            return p_fg
        return calibrated_probability(p_fg, self.scale, self.bias)


#: probabilities are clipped this far from 0 and 1 before their log-odds are taken
LOG_ODDS_EPS = 1e-7


def _log_odds(p: Tensor) -> Tensor:
    p = p.clamp(LOG_ODDS_EPS, 1.0 - LOG_ODDS_EPS)
    return torch.log(p) - torch.log1p(-p)


def calibrated_probability(p_fg: Tensor, scale: float, bias: float) -> Tensor:
    """``sigmoid(scale * logit(p_fg) + bias)`` in float64: the bias-corrected temperature map."""
    return torch.sigmoid(scale * _log_odds(p_fg.double()) + bias)


def fit_bias_corrected_temperature(p_fg: Tensor, foreground: Tensor, *,
                                   max_iter: int = 100) -> tuple[float, float]:
    """``(scale, bias)`` minimising the log-loss of ``sigmoid(scale * logit(p_fg) + bias)`` against the
    labelled ``foreground`` (bool, same voxels): bias-corrected temperature scaling reduced to the
    foreground-against-background decision. At the optimum the mean calibrated probability equals the
    foreground fraction (the bias's score equation)."""
    z = _log_odds(p_fg.reshape(-1).double())
    y = foreground.reshape(-1).double()
    if z.numel() == 0 or z.numel() != y.numel():
        raise ValueError("calibration needs one foreground label per probability")
    if not 0.0 < float(y.mean()) < 1.0:
        raise ValueError("the held-out source labels are all foreground or all background: nothing to "
                         "calibrate against")
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([params], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(params[0] * z + params[1], y)
        loss.backward()
        return loss

    optimiser.step(closure)
    scale, bias = (float(v) for v in params.detach())
    return scale, bias


def em_foreground_prior(
    p_fg: Tensor, source_soft: float, *, weights: Tensor | None = None, tolerance: float = EM_TOLERANCE,
    max_iter: int = EM_MAX_ITER,
) -> tuple[float, int, bool]:
    """Saerens-Latinne-Decaestecker EM for the foreground prior of the voxels whose foreground probability
    is ``p_fg``, the posteriors having been learned under the prior ``source_soft``; ``weights`` counts the
    voxels at each ``p_fg`` (a histogram's bin centres and counts, as ``voxuda segment`` keeps them).

    Returns ``(estimate, iterations, converged)``. Each step re-weights every posterior by the ratio of the
    current prior to ``source_soft`` (foreground) and of their complements (background), and takes the mean
    re-weighted foreground posterior as the next prior. The log-likelihood of the prior is concave, so the
    fixed point is unique; with ``mean(p_fg) == source_soft`` it is the start.
    """
    if not 0.0 < source_soft < 1.0:
        raise ValueError(f"the source prior must lie strictly between 0 and 1, not {source_soft}")
    p = p_fg.reshape(-1).double().clamp(0.0, 1.0)
    w = torch.ones_like(p) if weights is None else weights.reshape(-1).double()
    if w.shape != p.shape or not float(w.sum()) > 0:
        raise ValueError("no voxels to estimate the foreground prior on")
    w = w / w.sum()
    prior = source_soft
    for iteration in range(1, max_iter + 1):
        fg = p * (prior / source_soft)
        bg = (1.0 - p) * ((1.0 - prior) / (1.0 - source_soft))
        updated = float((w * fg / (fg + bg).clamp_min(torch.finfo(torch.float64).tiny)).sum())
        if abs(updated - prior) < tolerance:
            return updated, iteration, True
        prior = updated
    return prior, max_iter, False


def source_fraction_prior(labels: Tensor | None, where: str = "evaluation.source_prior",
                          remedy: str = "set evaluation.fg_prior = [lo, hi] instead") -> tuple[float, float]:
    """``[f, f]`` with ``f`` the foreground fraction of the labelled source train split (the supervision
    every method has; no target label is read); a one-line error naming ``where`` when there is none."""
    if labels is None:
        raise ConfigError(f"{where}: the source train split has no labels to measure the foreground "
                          f"fraction on; {remedy}")
    fraction = foreground_fraction(labels)
    if not fraction > 0:
        raise ConfigError(f"{where}: the source train labels hold no foreground; {remedy}")
    return fraction, fraction


def readout_prior(fg_prior: Sequence[float], source_prior: bool, source_labels: Callable[[], Tensor | None],
                  where: str = "evaluation.source_prior") -> tuple[tuple[float, float], str] | None:
    """The range a prior-calibrated readout aims at and where it comes from: the user's ``fg_prior``, else
    (``source_prior``) the source train split's fraction, else ``None`` (argmax). ``source_labels`` is
    called only when the source fraction is needed (loading them costs I/O)."""
    if fg_prior:
        return (float(fg_prior[0]), float(fg_prior[1])), "user range"
    if source_prior:
        return source_fraction_prior(source_labels(), where), "source fraction"
    return None


def threshold_for_fraction(p_fg: Tensor, fraction: float) -> float:
    """The threshold ``t`` with ``mean(p_fg > t)`` closest to ``fraction`` (exact up to ties)."""
    flat = p_fg.reshape(-1).float()
    n = flat.numel()
    if n == 0:
        raise ValueError("no voxels to calibrate the foreground threshold on")
    k = int(round(fraction * n))
    if k <= 0:
        return float(flat.max())  # nothing above the maximum
    if k >= n:
        return float(torch.nextafter(flat.min(), torch.tensor(-1.0)))  # everything above
    # the k-th largest value is the (n - k + 1)-th smallest; threshold just below it keeps k voxels
    kth_largest = torch.kthvalue(flat, n - k + 1).values
    below = flat[flat < kth_largest]
    return float((kth_largest + below.max()) / 2) if below.numel() else float(
        torch.nextafter(kth_largest, torch.tensor(-1.0)))


def prior_fraction(argmax_fraction: float, fg_prior: Sequence[float]) -> float | None:
    """The foreground fraction a prior-calibrated decision aims at: argmax's, clamped into ``[lo, hi]``;
    ``None`` when argmax's already lies inside (the decision then stays argmax)."""
    wanted = min(max(argmax_fraction, float(fg_prior[0])), float(fg_prior[1]))
    return None if wanted == argmax_fraction else wanted


def threshold_from_histogram(counts: np.ndarray, fraction: float) -> float:
    """The threshold on a probability whose histogram over ``[0, 1]`` is ``counts`` (equal bins) that calls
    the share closest to ``fraction`` of the voxels above it: a bin edge, so exact up to one bin's voxels.
    For volumes too large to hold (``voxuda segment`` streams a whole tomogram)."""
    total = int(counts.sum())
    if total == 0:
        raise ValueError("no voxels to calibrate the foreground threshold on")
    above = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]])  # voxels at or above each edge
    edge = int(np.argmin(np.abs(above - fraction * total)))
    # just below the bin edge, so that ``p > threshold`` keeps exactly the voxels binned at or above it
    return float(np.nextafter(edge / len(counts), -1.0)) if edge > 0 else -1.0


def _foreground_pass(predictor: nn.Module, volumes: Tensor, *, batch_size: int, device: torch.device | str,
                     input_transform: InputTransform | None, keep_all: bool = False) -> tuple[Tensor, float]:
    """``p_fg`` of ``volumes`` (evenly subsampled to :data:`MAX_CALIBRATION_VOXELS` unless ``keep_all``:
    then one per voxel, in order, to pair with labels) and argmax's foreground fraction over all of them."""
    parts: list[Tensor] = []
    fg_argmax = 0
    total = 0
    for _, probs in iter_probabilities(predictor, volumes, batch_size=batch_size, device=device,
                                       input_transform=input_transform):
        fg_argmax += int((probs.argmax(dim=1) > 0).sum())
        total += probs[:, 0].numel()
        parts.append(foreground_probability(probs).reshape(-1))
    if total == 0:
        raise ValueError("no volumes to calibrate the foreground threshold on")
    p_fg = torch.cat(parts)
    if p_fg.numel() > MAX_CALIBRATION_VOXELS and not keep_all:
        p_fg = p_fg[:: -(-p_fg.numel() // MAX_CALIBRATION_VOXELS)]
    return p_fg, fg_argmax / total


def _threshold_at(p_fg: Tensor, argmax_fraction: float, fg_prior: tuple[float, float], origin: str,
                  estimate: PriorEstimate | None = None) -> PriorThreshold:
    wanted = prior_fraction(argmax_fraction, fg_prior)
    threshold = None if wanted is None else threshold_for_fraction(p_fg, wanted)
    return PriorThreshold(threshold=threshold, fg_prior=fg_prior, argmax_fraction=argmax_fraction,
                          target_fraction=argmax_fraction if wanted is None else wanted, origin=origin,
                          estimate=estimate)


def calibrate_prior_threshold(
    predictor: nn.Module,
    volumes: Tensor,
    fg_prior: Sequence[float],
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
    input_transform: InputTransform | None = None,
    origin: str = "user range",
) -> PriorThreshold:
    """Choose the foreground threshold on unlabelled ``volumes`` so that their predicted foreground fraction
    is argmax's, clamped into ``fg_prior = [lo, hi]``."""
    p_fg, argmax_fraction = _foreground_pass(predictor, volumes, batch_size=batch_size, device=device,
                                             input_transform=input_transform)
    return _threshold_at(p_fg, argmax_fraction, (float(fg_prior[0]), float(fg_prior[1])), origin)


def source_calibration(
    predictor: nn.Module, source_volumes: Tensor, source_labels: Tensor | None = None, *, method: str = "em",
    batch_size: int, device: torch.device | str = "cpu", input_transform: InputTransform | None = None,
) -> SourceCalibration:
    """The network's posteriors on held-out source volumes: for ``em`` their mean ``p_fg``, the prior they
    carry (``source_labels`` are not read); for ``em_calibrated`` the bias-corrected temperature fitted on
    ``source_labels`` and the mean calibrated ``p_fg``. An error when that mean is 0 or 1 (no prior to
    re-estimate)."""
    calibrate = method == "em_calibrated"
    if calibrate and source_labels is None:
        raise ValueError("em_calibrated needs the held-out source labels to calibrate on")
    source_p, _ = _foreground_pass(predictor, source_volumes, batch_size=batch_size, device=device,
                                   input_transform=input_transform, keep_all=calibrate)
    if calibrate:
        assert source_labels is not None
        scale, bias = fit_bias_corrected_temperature(source_p, source_labels > 0)
        source_soft = float(calibrated_probability(source_p, scale, bias).mean())
        calibration = SourceCalibration(source_soft=source_soft, scale=scale, bias=bias)
    else:
        calibration = SourceCalibration(source_soft=float(source_p.double().mean()))
    if not 0.0 < calibration.source_soft < 1.0:
        raise ValueError(f"the network's mean foreground probability on the source is "
                         f"{calibration.source_soft:g}: it carries no prior to re-estimate; give a "
                         "foreground range instead")
    return calibration


def estimate_prior(p_fg: Tensor, source: SourceCalibration, method: str,
                   weights: Tensor | None = None) -> PriorEstimate:
    """EM on ``p_fg`` (optionally counted by ``weights``) after ``source``'s calibration map."""
    p = source.apply(p_fg.double())
    value, iterations, converged = em_foreground_prior(p, source.source_soft, weights=weights)
    w = torch.ones_like(p) if weights is None else weights.double()
    target_soft = float((p * w).sum() / w.sum().clamp_min(1.0))
    return PriorEstimate(method=method, estimate=value, source_soft=source.source_soft,
                         target_soft=target_soft, iterations=iterations, converged=converged,
                         scale=source.scale, bias=source.bias)


def estimate_from_histogram(counts: np.ndarray, source: SourceCalibration,
                            method: str = "em") -> PriorEstimate:
    """The EM estimate of the foreground fraction of voxels whose ``p_fg`` histogram over ``[0, 1]`` (equal
    bins) is ``counts``, each bin taken at its centre (``voxuda segment`` streams a whole tomogram)."""
    centres = (torch.arange(len(counts), dtype=torch.float64) + 0.5) / len(counts)
    return estimate_prior(centres, source, method, weights=torch.as_tensor(counts, dtype=torch.float64))


def calibrate_estimated_threshold(
    predictor: nn.Module,
    volumes: Tensor,
    source_volumes: Tensor,
    source_labels: Tensor | None = None,
    *,
    method: str = "em",
    batch_size: int,
    device: torch.device | str = "cpu",
    input_transform: InputTransform | None = None,
) -> PriorThreshold:
    """The foreground threshold on unlabelled target ``volumes`` aimed at the EM estimate of their
    foreground fraction (:func:`em_foreground_prior`), the posteriors' own prior measured on the held-out
    ``source_volumes``; for ``method = "em_calibrated"`` the posteriors are first calibrated on
    ``source_labels`` (:func:`fit_bias_corrected_temperature`). No target label is read. The threshold is on
    the raw ``p_fg``: calibration is monotone, so it ranks the voxels alike."""
    source = source_calibration(predictor, source_volumes, source_labels, method=method,
                                batch_size=batch_size, device=device, input_transform=input_transform)
    p_fg, argmax_fraction = _foreground_pass(predictor, volumes, batch_size=batch_size, device=device,
                                             input_transform=input_transform)
    estimate = estimate_prior(p_fg, source, method)
    value = estimate.estimate
    return _threshold_at(p_fg, argmax_fraction, (value, value), "em estimate", estimate)


@attrs.frozen
class ReadoutRule:
    """Which foreground fraction the test-time decision aims at: the user's ``fg_prior`` range, the source
    train split's fraction (``source_prior``), a label-free ``estimator`` (``em``, ``em_calibrated``), or
    none of them (argmax). ``source_option`` is the option named when the source labels are missing."""

    fg_prior: tuple[float, ...] = ()
    source_prior: bool = False
    estimator: str = "none"
    source_option: str = "evaluation.source_prior"

    @property
    def is_argmax(self) -> bool:
        return not self.fg_prior and not self.source_prior and self.estimator == "none"


def readout_rule(evaluation: Any, *, fg_prior: Sequence[float] | None = None,
                 source_prior: bool | None = None, prior_estimate: str | None = None) -> ReadoutRule:
    """The rule of a run's ``evaluation`` config (``fg_prior``, ``source_prior``, ``prior_estimate``) with
    the command line's overrides applied: one override replaces the run's rule (``prior_estimate = "none"``
    turns every prior off; ``source_prior = False`` only the source fraction); two are refused with one
    line. Why one place: ``voxuda evaluate`` and the benchmark engine must read a run out alike."""
    given = [name for name, on in (("--fg-prior", fg_prior is not None),
                                   ("--source-prior", bool(source_prior)),
                                   ("--prior-estimate", prior_estimate not in (None, "none"))) if on]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} both set the foreground fraction; pass one")
    if fg_prior is not None:
        prior = tuple(float(v) for v in fg_prior)
        problem = prior_range_problem(prior)
        if problem is not None:
            raise ConfigError(f"--fg-prior {' '.join(f'{v:g}' for v in prior)}: {problem}")
        return ReadoutRule(fg_prior=prior)
    if source_prior:
        return ReadoutRule(source_prior=True, source_option="--source-prior")
    if prior_estimate is not None:
        if prior_estimate not in PRIOR_ESTIMATORS:
            raise ConfigError(f"--prior-estimate {prior_estimate}: choose one of "
                              f"{', '.join(PRIOR_ESTIMATORS)}")
        return ReadoutRule(estimator=prior_estimate)
    if evaluation.prior_estimate != "none":
        return ReadoutRule(estimator=evaluation.prior_estimate)
    return ReadoutRule(fg_prior=tuple(float(v) for v in evaluation.fg_prior),
                       source_prior=bool(evaluation.source_prior) and source_prior is None)


@attrs.frozen
class ReadoutSplits:
    """Loaders of the splits a readout rule calibrates on; each is called only when the rule needs it
    (loading costs I/O). ``target_train``: the unlabelled target train volumes; ``source_val(with_labels)``:
    the held-out source volumes and, when asked, their labels; ``source_train_labels``: the labelled source
    train split's labels (None when it has none)."""

    target_train: Callable[[], Tensor]
    source_val: Callable[[bool], tuple[Tensor, Tensor | None]]
    source_train_labels: Callable[[], Tensor | None]


def calibrate_readout(predictor: nn.Module, rule: ReadoutRule, splits: ReadoutSplits, *, batch_size: int,
                      device: torch.device | str = "cpu",
                      input_transform: InputTransform | None = None) -> PriorThreshold | None:
    """The decision ``rule`` asks for, calibrated on ``splits`` (None: argmax). No target label is read."""
    if rule.estimator != "none":
        volumes, labels = splits.source_val(rule.estimator == "em_calibrated")
        return calibrate_estimated_threshold(predictor, splits.target_train(), volumes, labels,
                                             method=rule.estimator, batch_size=batch_size, device=device,
                                             input_transform=input_transform)
    resolved = readout_prior(rule.fg_prior, rule.source_prior, splits.source_train_labels, rule.source_option)
    if resolved is None:
        return None
    return calibrate_prior_threshold(predictor, splits.target_train(), resolved[0], batch_size=batch_size,
                                     device=device, input_transform=input_transform, origin=resolved[1])


__all__ = ["PriorEstimate", "PriorThreshold", "ReadoutRule", "ReadoutSplits", "SourceCalibration",
           "calibrate_estimated_threshold", "calibrate_prior_threshold", "calibrate_readout",
           "calibrated_probability", "em_foreground_prior", "estimate_from_histogram", "estimate_prior",
           "fit_bias_corrected_temperature", "prior_fraction", "readout_prior", "readout_rule",
           "source_calibration", "source_fraction_prior", "threshold_for_fraction",
           "threshold_from_histogram"]

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

from voxuda.engine.inference import InputTransform, iter_probabilities
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
    origin: str = "user range"  # or "source fraction" (evaluation.source_prior)

    def __call__(self, probs: Tensor) -> Tensor:
        if self.threshold is None:
            return probs.argmax(dim=1)
        labels = foreground_class(probs)
        return torch.where(foreground_probability(probs) > self.threshold, labels, torch.zeros_like(labels))

    def record(self) -> dict[str, Any]:
        """What ``eval_*.json`` keeps of the decision."""
        return {"rule": "prior_threshold", "fg_prior": list(self.fg_prior), "origin": self.origin,
                "threshold": self.threshold, "argmax_fraction": self.argmax_fraction,
                "target_fraction": self.target_fraction}


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
    lo, hi = float(fg_prior[0]), float(fg_prior[1])
    parts: list[Tensor] = []
    fg_argmax = 0
    total = 0
    for _, probs in iter_probabilities(predictor, volumes, batch_size=batch_size, device=device,
                                       input_transform=input_transform):
        fg_argmax += int((probs.argmax(dim=1) > 0).sum())
        total += probs[:, 0].numel()
        parts.append(foreground_probability(probs).reshape(-1))
    if total == 0:
        raise ValueError("no target volumes to calibrate the foreground threshold on")
    p_fg = torch.cat(parts)
    if p_fg.numel() > MAX_CALIBRATION_VOXELS:
        p_fg = p_fg[:: -(-p_fg.numel() // MAX_CALIBRATION_VOXELS)]
    argmax_fraction = fg_argmax / total
    wanted = prior_fraction(argmax_fraction, (lo, hi))
    threshold = None if wanted is None else threshold_for_fraction(p_fg, wanted)
    return PriorThreshold(threshold=threshold, fg_prior=(lo, hi), argmax_fraction=argmax_fraction,
                          target_fraction=argmax_fraction if wanted is None else wanted, origin=origin)


__all__ = ["PriorThreshold", "calibrate_prior_threshold", "prior_fraction", "readout_prior",
           "source_fraction_prior", "threshold_for_fraction", "threshold_from_histogram"]

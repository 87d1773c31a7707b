"""Which teacher voxels become pseudo-labels: one implementation for mean teacher, Vox-UDA and FixMatch.

Why more than a confidence threshold: subtomograms are 95-99 % background, so "max softmax >= t" keeps almost
every voxel and almost all of them are background (adaptation review, finding 6: 98 % kept, the student's
predicted foreground fell from 1.43 % to 0.86 %). When the source model over-predicts foreground on the
target instead (appearance probe: 4.3 % predicted against 1.45 % true), the threshold confirms that error.
Three selections, chosen by ``pseudo_label_selection``:

* ``threshold``: argmax labels where the max softmax is at least ``confidence_threshold`` (the original).
* ``class_balanced``: CBST-style (Zou et al., ECCV 2018): per class c, of the voxels whose argmax is c, keep
  the ``class_keep_fraction`` with the highest confidence in the batch, so each class contributes the same
  share of its predictions and foreground is not drowned by the easy background. (CBST's per-class
  thresholds, in the simpler argmax-then-quantile form most reimplementations use.)
* ``prior``: a class-proportion prior. With a foreground fraction pi, the voxels whose foreground probability
  ``1 - p(background)`` ranks in the top pi of the batch (or of each volume, ``prior_scope``) are labelled
  foreground (the most probable non-background class); voxels with ``p_fg <= 1 - confidence_threshold`` are
  labelled background; everything in between is ignored. pi is the source train split's mean foreground
  fraction (measured at the start of training) or, with ``fg_prior = [lo, hi]``, the teacher's own predicted
  fraction clamped into that range. This is the label-free "threshold chosen so that the predicted foreground
  fraction equals the source's", which alone recovered a fifth of the source-only-to-oracle gap in the probe.

``size_prior_weight > 0`` adds a constrained-CNN size penalty (Kervadec et al., MedIA 2019) on the student's
mean foreground probability on the target: ``((s - hi)_+^2 + (lo - s)_+^2) / hi^2``, i.e. in units of the
prior's upper bound (twice the prior costs 1).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs
import torch
from torch import Tensor, nn

from voxuda.checks import non_negative, unit_interval, valid_prior_range
from voxuda.config import help_field
from voxuda.errors import ConfigError
from voxuda.methods.losses import class_index, confidence_mask, masked_cross_entropy, segmentation_loss
from voxuda.methods.segmentation import BaseMethodConfig

PseudoLabelSelection = Literal["threshold", "class_balanced", "prior"]
PriorScope = Literal["batch", "volume"]
PseudoLabelLoss = Literal["ce", "ce_dice"]


@attrs.define
class PseudoLabelConfig(BaseMethodConfig):
    """Pseudo-label selection options shared by every self-training method (docs/vox_uda.md)."""

    confidence_threshold: float = help_field(
        0.8, help="threshold: max softmax a voxel needs; prior: background needs p_fg <= 1 - this",
        validator=unit_interval,
    )
    pseudo_label_selection: PseudoLabelSelection = help_field(
        "threshold", help="threshold (max softmax), class_balanced (CBST: top class_keep_fraction of each "
        "class) or prior (top fg_prior of p_fg as foreground, confident background, rest ignored)",
    )
    class_keep_fraction: float = help_field(
        0.5, help="class_balanced: share of each class's predicted voxels kept, the most confident first [I]",
        validator=unit_interval,
    )
    fg_prior: tuple[float, ...] = help_field(
        (), help="prior / size penalty: [lo, hi] foreground fraction; [] = the source train split's mean "
        "foreground fraction, measured when training starts [R-own: appearance probe]",
        validator=valid_prior_range,
    )
    prior_scope: PriorScope = help_field(
        "batch", help="prior: rank voxels across the whole batch (volumes differ in size; default [I]) or "
        "within each volume",
    )
    size_prior_weight: float = help_field(
        0.0, help="weight of the constrained-CNN size penalty on the student's mean target p_fg outside "
        "[lo, hi] (Kervadec et al. 2019); 0 = off [I]",
        validator=non_negative,
    )
    pseudo_loss: PseudoLabelLoss = help_field(
        "ce", help="loss on the kept pseudo-labels: ce (masked cross-entropy [R]) or ce_dice (the supervised "
        "loss's form, ce_weight CE + dice_weight soft Dice, on the kept voxels [I])",
    )


@attrs.frozen
class PseudoLabels:
    """Teacher output on a target batch: labels, mask, confidence ``(N, D, H, W)``; probs ``(N, K, ...)``.

    ``prior`` is the foreground fraction the selection used (``None`` when it used none).
    """

    labels: Tensor
    mask: Tensor
    confidence: Tensor
    probs: Tensor
    prior: float | None = None

    @property
    def keep_fraction(self) -> float:
        return float(self.mask.float().mean())


# -- the selections (pure functions of the probabilities) ------------------------------------------------
def foreground_fraction(labels: Tensor) -> float:
    """Share of voxels with a non-background label (class 0 is background)."""
    return float((labels > 0).float().mean()) if labels.numel() else 0.0


def foreground_probability(probs: Tensor) -> Tensor:
    """``p_fg = 1 - p(background)`` of ``(N, K, *spatial)`` probabilities, shape ``(N, *spatial)``."""
    return 1.0 - probs[:, 0]


def foreground_class(probs: Tensor) -> Tensor:
    """The most probable non-background class of each voxel (1 for two classes)."""
    if probs.shape[1] == 2:
        return torch.ones(probs.shape[:1] + probs.shape[2:], dtype=torch.long, device=probs.device)
    return class_index(probs[:, 1:]) + 1


def _top_k_mask(scores: Tensor, k: int) -> Tensor:
    """Bool mask of exactly ``k`` entries of the 1-D ``scores`` with the highest values (ties: any)."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        mask[torch.topk(scores, k, sorted=False).indices] = True
    return mask


def select_class_balanced(probs: Tensor, keep_fraction: float) -> tuple[Tensor, Tensor]:
    """Argmax labels; of each class's voxels, the ``round(keep_fraction * n_c)`` most confident are kept.

    Counted over the whole batch, so a class predicted in few voxels keeps as large a share of them as the
    background keeps of its own.
    """
    confidence, labels = probs.max(dim=1)
    flat_conf, flat_labels = confidence.reshape(-1), labels.reshape(-1)
    mask = torch.zeros_like(flat_labels, dtype=torch.bool)
    for c in range(probs.shape[1]):
        members = (flat_labels == c).nonzero().squeeze(1)
        k = round(keep_fraction * members.numel())
        if k:
            mask[members[_top_k_mask(flat_conf[members], k)]] = True
    return labels, mask.reshape(labels.shape)


def select_by_prior(
    probs: Tensor, fg_fraction: float | Tensor, background_threshold: float, scope: PriorScope = "batch"
) -> tuple[Tensor, Tensor]:
    """Foreground = the top ``fg_fraction`` of voxels by ``p_fg``; background = ``p_fg <= 1 - threshold``.

    ``scope = "batch"`` ranks all voxels of the batch together (``round(pi * numel)`` foreground voxels);
    ``"volume"`` ranks within each volume, and ``fg_fraction`` may then be a per-volume ``(N,)`` tensor.
    Voxels in neither set are left out of the mask.
    """
    p_fg = foreground_probability(probs)
    n = p_fg.shape[0]
    if scope == "batch":
        k = round(float(fg_fraction) * p_fg.numel())
        fg = _top_k_mask(p_fg.reshape(-1), k).reshape(p_fg.shape)
    else:
        fractions = torch.as_tensor(fg_fraction, dtype=torch.float64).expand(n)
        per_volume = p_fg[0].numel()
        fg = torch.stack([
            _top_k_mask(p_fg[i].reshape(-1), round(float(fractions[i]) * per_volume)).reshape(p_fg.shape[1:])
            for i in range(n)
        ])
    background = (p_fg <= 1.0 - background_threshold) & ~fg
    labels = torch.where(fg, foreground_class(probs), torch.zeros_like(fg, dtype=torch.long))
    return labels, fg | background


def size_penalty(student_logits: Tensor, lo: float, hi: float, scope: PriorScope = "batch") -> Tensor:
    """Constrained-CNN size penalty on the mean foreground probability ``s`` (per batch or per volume, then
    averaged): ``((s - hi)_+^2 + (lo - s)_+^2) / hi^2``; zero inside ``[lo, hi]``."""
    p_fg = foreground_probability(student_logits.float().softmax(dim=1))
    s = p_fg.mean() if scope == "batch" else p_fg.flatten(1).mean(dim=1)
    excess = torch.relu(s - hi) ** 2 + torch.relu(lo - s) ** 2
    return (excess / max(hi, 1e-8) ** 2).mean()


def selection_metrics(pseudo: PseudoLabels) -> dict[str, float]:
    """What to read when self-training stalls or collapses: the kept share, the foreground share of the kept
    pseudo-labels, the teacher's argmax foreground share on the batch and the prior (when one was used)."""
    kept = pseudo.mask
    n_kept = int(kept.sum())
    fg_kept = int(((pseudo.labels > 0) & kept).sum())
    metrics = {
        "pseudo_keep_fraction": pseudo.keep_fraction,
        "pseudo_fg_fraction": fg_kept / n_kept if n_kept else 0.0,
        "teacher_fg_fraction": foreground_fraction(class_index(pseudo.probs)),
        "teacher_confidence": float(pseudo.confidence.mean()),
    }
    if pseudo.prior is not None:
        metrics["fg_prior"] = pseudo.prior
    return metrics


# -- the stateful part: the prior, measured on the source split -------------------------------------------
class PseudoLabelSelector(nn.Module):
    """Applies a :class:`PseudoLabelConfig` to teacher probabilities; owns the measured source prior.

    The source prior is a buffer (NaN until measured), so checkpoints carry it and a checkpoint loaded for
    prediction (e.g. the benchmark's example panels) selects pseudo-labels as in training. Checkpoints
    written before the buffer existed still load: a missing key leaves it unmeasured.
    """

    source_prior: Tensor

    def __init__(self, config: PseudoLabelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("source_prior", torch.tensor(float("nan")))

    def on_train_start(self, extra: dict[str, Any]) -> None:
        """Measure the source train split's foreground fraction (``TrainContext.extra["data"]``)."""
        data = extra.get("data")
        labels = getattr(getattr(data, "source_train", None), "labels", None)
        if labels is not None:
            self.source_prior.fill_(foreground_fraction(labels))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,  # type: ignore[no-untyped-def]
                              unexpected_keys, error_msgs) -> None:
        key = prefix + "source_prior"
        before = len(missing_keys)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if key not in state_dict and key in missing_keys[before:]:
            missing_keys.remove(key)

    def prior_range(self) -> tuple[float, float]:
        """``(lo, hi)``: the configured range, else the measured source fraction twice."""
        if self.config.fg_prior:
            lo, hi = self.config.fg_prior
            return float(lo), float(hi)
        prior = float(self.source_prior)
        if math.isnan(prior):
            raise ConfigError(
                "method.fg_prior: the prior selection / size penalty needs the source foreground fraction; "
                "train through voxuda's trainer (it passes the source split) or set fg_prior = [lo, hi]"
            )
        return prior, prior

    def _prior_for(self, probs: Tensor) -> tuple[float | Tensor, float]:
        """The fraction to select (per batch or per volume) and its logged batch value."""
        lo, hi = self.prior_range()
        if lo == hi:
            return lo, lo
        teacher_fg = (class_index(probs) > 0).float()
        if self.config.prior_scope == "batch":
            value = min(max(float(teacher_fg.mean()), lo), hi)
            return value, value
        per_volume = teacher_fg.flatten(1).mean(dim=1).clamp(lo, hi)
        return per_volume, float(per_volume.mean())

    @torch.no_grad()
    def select(self, probs: Tensor) -> PseudoLabels:
        """Pseudo-labels and mask from class probabilities ``(N, K, *spatial)``."""
        cfg = self.config
        confidence = probs.max(dim=1).values
        prior: float | None = None
        if cfg.pseudo_label_selection == "threshold":
            labels, mask, _ = confidence_mask(probs, cfg.confidence_threshold)
        elif cfg.pseudo_label_selection == "class_balanced":
            labels, mask = select_class_balanced(probs, cfg.class_keep_fraction)
        else:
            fraction, prior = self._prior_for(probs)
            labels, mask = select_by_prior(probs, fraction, cfg.confidence_threshold, cfg.prior_scope)
        if prior is None and cfg.size_prior_weight > 0:
            prior = sum(self.prior_range()) / 2
        return PseudoLabels(labels=labels, mask=mask, confidence=confidence, probs=probs, prior=prior)

    def label_loss(self, student_logits: Tensor, labels: Tensor,
                   mask: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The loss of the student's logits on the kept pseudo-labels (``pseudo_loss``) and its logged parts.

        ``ce`` is the masked cross-entropy of every earlier run (nothing to log beside it); ``ce_dice`` adds
        soft Dice on the kept voxels with the supervised loss's weights, logged as ``pseudo_ce`` and
        ``pseudo_dice``.
        """
        if self.config.pseudo_loss == "ce":
            return masked_cross_entropy(student_logits, labels, mask), {}
        loss, parts = segmentation_loss(student_logits, labels, ce_weight=self.config.ce_weight,
                                        dice_weight=self.config.dice_weight, mask=mask)
        return loss, {f"pseudo_{key}": value for key, value in parts.items()}

    def size_loss(self, student_logits: Tensor) -> Tensor | None:
        """The weighted size penalty on the student's target logits, or ``None`` when it is off."""
        if self.config.size_prior_weight <= 0:
            return None
        lo, hi = self.prior_range()
        return self.config.size_prior_weight * size_penalty(student_logits, lo, hi, self.config.prior_scope)

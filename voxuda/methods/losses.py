"""Segmentation losses shared by every method (N-D: tensors are ``(N, K, *spatial)``).

Why soft Dice beside cross-entropy: subtomograms are mostly background, so voxel-averaged CE alone lets a
model predict "background everywhere" cheaply; Dice scores the foreground overlap directly. Pseudo-label CE
is masked by teacher confidence so that unsure voxels contribute nothing (the mean is over kept voxels only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """``(N, *spatial)`` integer labels -> ``(N, K, *spatial)`` float one-hot (channel axis second)."""
    encoded = F.one_hot(labels.long(), num_classes)  # (N, *spatial, K)
    return encoded.movedim(-1, 1).to(torch.float32)


def soft_dice_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    eps: float = 1e-5,
    include_background: bool = True,
    mask: Tensor | None = None,
) -> Tensor:
    """1 - mean soft Dice over classes, sums taken over the batch and every spatial axis.

    Summing over the batch (rather than averaging per-volume Dice) keeps volumes with an empty class from
    producing 0/0 noise at batch size 1 to 4. ``mask`` (``(N, *spatial)`` bool) excludes voxels.
    """
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    target = one_hot(labels, num_classes)
    if mask is not None:
        weight = mask.unsqueeze(1).to(probs.dtype)
        probs = probs * weight
        target = target * weight
    dims = (0, *range(2, logits.ndim))
    intersection = (probs * target).sum(dim=dims)
    cardinality = probs.sum(dim=dims) + target.sum(dim=dims)
    dice = (2.0 * intersection + eps) / (cardinality + eps)
    if not include_background and num_classes > 1:
        dice = dice[1:]
    return 1.0 - dice.mean()


def segmentation_loss(
    logits: Tensor, labels: Tensor, *, ce_weight: float = 1.0, dice_weight: float = 1.0
) -> tuple[Tensor, dict[str, float]]:
    """Weighted CE + soft Dice; returns the total and the detached parts for logging."""
    ce = F.cross_entropy(logits.float(), labels.long())
    dice = soft_dice_loss(logits, labels)
    total = ce_weight * ce + dice_weight * dice
    return total, {"ce": float(ce.detach()), "dice": float(dice.detach())}


def class_index(scores: Tensor) -> Tensor:
    """The index of the largest score along the class axis (dim 1): ``scores.argmax(dim=1)``, first maximum
    on ties, computed as ``max(dim=1).indices``, which returns the same indices about 7x faster on the
    contiguous ``(N, K, D, H, W)`` logits and probabilities of training on CPU (30 ms vs 4 ms for 8 x 2 x
    32^3); per-step logging read it several times (docs/performance.md)."""
    return scores.max(dim=1).indices


def confidence_mask(probs: Tensor, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Pseudo-labels from class probabilities ``(N, K, *spatial)``.

    Returns ``(labels, mask, confidence)``: argmax labels, ``confidence >= threshold`` (bool) and the max
    probability, each ``(N, *spatial)``. A threshold of 0 keeps every voxel.
    """
    confidence, labels = probs.max(dim=1)
    return labels, confidence >= threshold, confidence


def masked_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy averaged over the voxels where ``mask`` is true (0, still differentiable, if none)."""
    per_voxel = F.cross_entropy(logits.float(), labels.long(), reduction="none")
    weight = mask.to(per_voxel.dtype)
    return (per_voxel * weight).sum() / weight.sum().clamp_min(1.0)

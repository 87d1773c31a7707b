"""Losses shared by the methods and their terms (N-D: tensors are ``(N, K, *spatial)``).

Why soft Dice beside cross-entropy: subtomograms are mostly background, so voxel-averaged CE alone lets a
model predict "background everywhere" cheaply; Dice scores the foreground overlap directly. Pseudo-label CE
is masked by teacher confidence so that unsure voxels contribute nothing (the mean is over kept voxels only).
:func:`feature_consistency` is the distance behind Vox-UDA's L_con
(:class:`voxuda.methods.terms.ConsistencyTerm`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

ConsistencyForm = Literal["cosine", "cosine_flat", "mse"]


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
    logits: Tensor, labels: Tensor, *, ce_weight: float = 1.0, dice_weight: float = 1.0,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Weighted CE + soft Dice; returns the total and the detached parts for logging.

    ``mask`` (``(N, *spatial)`` bool) restricts both to the voxels where it is true: pseudo-labels leave
    voxels out, and ``pseudo_loss = "ce_dice"`` trains them with the supervised loss's form. Masked CE alone
    is dominated by the kept background (95-99 % of a subtomogram); Dice weighs each class by its own size.
    """
    ce = (F.cross_entropy(logits.float(), labels.long()) if mask is None
          else masked_cross_entropy(logits, labels, mask))
    dice = soft_dice_loss(logits, labels, mask=mask)
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


def feature_consistency(clean: Tensor, noisy: Tensor, form: ConsistencyForm) -> Tensor:
    """Distance between student features of clean and noisy source, ``(N, C, *spatial)`` each.

    ``cosine`` compares each voxel's channel vector (1 - cosine similarity, mean over voxels and batch);
    ``cosine_flat`` compares each sample's whole flattened feature map; ``mse`` is the mean squared
    difference. All are exactly 0 when ``clean`` equals ``noisy``.

    1 - cos is computed as ``0.5 |a/|a| - b/|b||^2`` with zero vectors left at zero. The two agree for
    non-zero vectors, but after a ReLU whole channel vectors are often zero, where ``F.cosine_similarity``
    returns 0 and would charge a loss of 1 for two identical (zero) features.
    """
    if clean.shape != noisy.shape:
        raise ValueError(f"consistency: feature shapes differ, {tuple(clean.shape)} vs {tuple(noisy.shape)}")
    a, b = clean.float(), noisy.float()
    if form == "mse":
        return F.mse_loss(b, a)
    if form == "cosine_flat":
        a, b = a.flatten(1), b.flatten(1)
    return _UnitVectorDistance.apply(a, b)


class _UnitVectorDistance(torch.autograd.Function):
    """``0.5 |a/|a| - b/|b||^2`` summed over dim 1, mean over the rest, with ``F.normalize``'s ``eps = 1e-8``.

    Written out in both directions because autograd's version, through two normalisations and their
    broadcasts over the channel axis, cost more than the student's whole forward pass at the quick size
    (docs/performance.md). Both directions work from three per-vector reductions, ``|a|``, ``|b|`` and
    ``a . b``, so no full-size intermediate (``a/|a|``, the difference) is made or kept: with
    ``ca = max(|a|, eps)``, ``cb = max(|b|, eps)`` the value is
    ``0.5 (|a|^2/ca^2 + |b|^2/cb^2) - a.b/(ca cb)``
    (equal to the normalised expression up to float rounding: within 1e-6 relative, tested), and the gradient
    is ``a (1 - [|a| >= eps] dot_a)/ca^2 - b/(ca cb)`` for ``a`` with ``dot_a = |a|^2/ca^2 - a.b/(ca cb)``
    (the bracket is ``clamp_min``'s mask: below ``eps`` the norm is a constant), the same with ``a`` and
    ``b`` swapped for ``b``; both times the upstream gradient over the number of averaged vectors
    (tests/engine/test_throughput_equivalence.py checks it against autograd's).
    """

    EPS = 1e-8

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor) -> Tensor:
        eps = _UnitVectorDistance.EPS
        norm_a = torch.linalg.vector_norm(a, dim=1, keepdim=True)
        norm_b = torch.linalg.vector_norm(b, dim=1, keepdim=True)
        dot = torch.linalg.vecdot(a, b, dim=1).unsqueeze(1)
        clamped_a, clamped_b = norm_a.clamp_min(eps), norm_b.clamp_min(eps)
        cross = dot / (clamped_a * clamped_b)
        ctx.save_for_backward(a, b, norm_a, norm_b, clamped_a, clamped_b, cross)
        per_vector = 0.5 * ((norm_a / clamped_a).square() + (norm_b / clamped_b).square()) - cross
        return per_vector.mean()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        a, b, norm_a, norm_b, clamped_a, clamped_b, cross = ctx.saved_tensors
        scale = grad / (a.numel() // a.shape[1])
        eps = _UnitVectorDistance.EPS
        shared = scale / (clamped_a * clamped_b)

        def one_side(x: Tensor, other: Tensor, norm: Tensor, clamped: Tensor) -> Tensor:
            along = ((norm / clamped).square() - cross) * (norm >= eps)
            return torch.mul(x, (1.0 - along) * scale / clamped.square()).addcmul_(other, shared, value=-1.0)

        grad_a = one_side(a, b, norm_a, clamped_a) if ctx.needs_input_grad[0] else None
        grad_b = one_side(b, a, norm_b, clamped_b) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b

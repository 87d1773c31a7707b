"""FixMatch's two views of a target batch, and pseudo-labels moved from the weak frame to the strong one.

weak   = a random orientation of the volume (voxuda.methods.augment: wedge-preserving flips and turns);
strong = a further random orientation of the weak view, then intensity jitter, noise, blur and
         cutout (voxuda_fixmatch.photometric).

Pseudo-labels are computed on the weak view, so they live in the weak frame; the strong view's extra
geometric transform is applied to them (and to their confidence mask) so every strong voxel is compared
with the label of the same physical voxel. Voxels erased by cutout are dropped from the mask.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from voxuda.plugin_api import FlipRot3D, apply_batch, confidence_mask, sample_batch_transforms
from voxuda_fixmatch.photometric import StrongPhotometric


@attrs.frozen
class Views:
    """Weak and strong views ``(N, C, D, H, W)`` of a batch; how to move weak-frame maps to the strong."""

    weak: Tensor
    strong: Tensor
    weak_transforms: list[FlipRot3D]
    strong_transforms: list[FlipRot3D]
    keep: Tensor  # (N, D, H, W) bool in the strong frame: False where cutout erased the input

    def to_strong_frame(self, x: Tensor) -> Tensor:
        """Move a weak-frame map (labels ``(N, D, H, W)`` or maps ``(N, K, D, H, W)``) to the strong frame."""
        return apply_batch(x, self.strong_transforms)


def make_views(
    volume: Tensor,
    generator: torch.Generator,
    photometric: StrongPhotometric,
    *,
    weak_flip_rot: bool = True,
    strong_flip_rot: bool = True,
) -> Views:
    """Draw the weak and strong views of a target batch (one independent draw per volume)."""
    n, shape = volume.shape[0], volume.shape[-3:]
    identity = [FlipRot3D() for _ in range(n)]
    weak_t = sample_batch_transforms(n, shape, generator) if weak_flip_rot else identity
    weak = apply_batch(volume, weak_t)
    strong_t = sample_batch_transforms(n, shape, generator) if strong_flip_rot else identity
    strong, keep = photometric(apply_batch(weak, strong_t), generator)
    return Views(weak=weak, strong=strong, weak_transforms=weak_t, strong_transforms=strong_t, keep=keep)


def pseudo_targets(weak_probs: Tensor, views: Views, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Hard pseudo-labels and mask in the strong frame from weak-view probabilities ``(N, K, D, H, W)``.

    Returns ``(labels, mask, confident)``: ``mask`` = confidence >= threshold and not erased by cutout;
    ``confident`` is the thresholded confidence alone (for logging the keep fraction).
    """
    labels, confident, _ = confidence_mask(weak_probs, threshold)
    return to_strong_targets(labels, confident, views)


def to_strong_targets(labels: Tensor, selected: Tensor, views: Views) -> tuple[Tensor, Tensor, Tensor]:
    """Move weak-frame pseudo-labels and their selection mask (any selection) to the strong frame.

    Returns ``(labels, mask, selected)`` in the strong frame; ``mask`` also drops the voxels cutout erased.
    """
    labels = views.to_strong_frame(labels)
    selected = views.to_strong_frame(selected)
    return labels, selected & views.keep, selected

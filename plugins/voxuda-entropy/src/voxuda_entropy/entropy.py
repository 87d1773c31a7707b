"""Voxel-wise entropy of softmax predictions, for tensors ``(N, K, *spatial)`` of any spatial rank.

Both quantities are normalised by ``log K`` as in ADVENT, so that they lie in [0, 1] whatever the number of
classes and a loss weight means the same thing for 2 or 20 classes. ``self_information`` (ADVENT's
``-p log p / log K`` map) is voxuda core's (``voxuda.methods.discriminator``), shared with the output-space
discriminator of DANN and Vox-UDA.
"""

from __future__ import annotations

from torch import Tensor

from voxuda.plugin_api import self_information

__all__ = ["entropy_map", "linear_ramp", "mean_entropy", "self_information"]


def entropy_map(logits: Tensor) -> Tensor:
    """Normalised Shannon entropy per voxel ``(N, *spatial)``: the channel sum of the self-information."""
    return self_information(logits).sum(dim=1)


def mean_entropy(logits: Tensor) -> Tensor:
    """Mean normalised entropy over the batch and every voxel (the MinEnt loss)."""
    return entropy_map(logits).mean()


def linear_ramp(step: int, ramp_steps: int) -> float:
    """``min(1, (step + 1) / ramp_steps)``; 1 when ``ramp_steps`` is 0.

    Entropy minimisation from step 0 rewards an untrained network for being confidently wrong on the target,
    so a short ramp lets the supervised source loss shape the predictions first.
    """
    if ramp_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / ramp_steps)

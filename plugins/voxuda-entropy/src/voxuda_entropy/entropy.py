"""Voxel-wise entropy of softmax predictions, for tensors ``(N, K, *spatial)`` of any spatial rank.

Both quantities are normalised by ``log K`` as in ADVENT, so that they lie in [0, 1] whatever the number of
classes and a loss weight means the same thing for 2 or 20 classes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_EPS = 1e-30


def self_information(logits: Tensor) -> Tensor:
    """ADVENT's weighted self-information map ``-p log p / log K``, shape ``(N, K, *spatial)``.

    Computed from ``log_softmax`` (not ``log(softmax)``) so confident voxels do not produce ``0 * -inf``.
    """
    num_classes = logits.shape[1]
    log_p = torch.log_softmax(logits.float(), dim=1)
    info = -log_p.exp() * log_p
    return info / math.log(max(num_classes, 2))


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

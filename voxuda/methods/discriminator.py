"""3D domain discriminators for adversarial adaptation on a backbone's feature tap.

``voxel`` mode classifies the domain of every voxel (a fully convolutional head, as in pixel-level adversarial
segmentation UDA); ``pooled`` mode global-average-pools the features first and classifies whole volumes (the
classic DANN head). Both return logits of "is target" with no sigmoid; use :func:`domain_adversarial_loss`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxuda.methods.grl import grad_reverse

DiscriminatorMode = Literal["voxel", "pooled"]


class DomainDiscriminator3D(nn.Module):
    """Domain classifier on ``(N, C, D, H, W)`` features.

    Uses no normalisation layers: a discriminator sees source and target batches separately, and batch or
    group statistics would leak the domain label into the features it classifies.
    """

    def __init__(self, in_channels: int, hidden: int = 32, mode: DiscriminatorMode = "pooled") -> None:
        super().__init__()
        if mode not in ("voxel", "pooled"):
            raise ValueError(f"discriminator mode must be 'voxel' or 'pooled', got {mode!r}")
        self.mode = mode
        if mode == "voxel":
            self.net: nn.Module = nn.Sequential(
                nn.Conv3d(in_channels, hidden, kernel_size=3, padding=1),
                nn.LeakyReLU(0.2),
                nn.Conv3d(hidden, hidden, kernel_size=3, padding=1),
                nn.LeakyReLU(0.2),
                nn.Conv3d(hidden, 1, kernel_size=1),
            )
        else:
            self.net = nn.Sequential(
                nn.Linear(in_channels, hidden),
                nn.LeakyReLU(0.2),
                nn.Linear(hidden, hidden),
                nn.LeakyReLU(0.2),
                nn.Linear(hidden, 1),
            )

    def forward(self, features: Tensor) -> Tensor:
        """Voxel mode: ``(N, 1, *spatial)`` logits; pooled mode: ``(N, 1)`` logits."""
        if self.mode == "pooled":
            features = features.mean(dim=tuple(range(2, features.ndim)))
        return self.net(features)


def domain_adversarial_loss(
    discriminator: nn.Module, source_features: Tensor, target_features: Tensor, lambd: float
) -> tuple[Tensor, float]:
    """BCE of the discriminator (source = 0, target = 1) behind a gradient-reversal layer of weight ``lambd``.

    Returns ``(loss, accuracy)``; accuracy is the detached fraction of correctly classified domain logits,
    useful for seeing whether the adversary is winning.
    """
    logits_s = discriminator(grad_reverse(source_features, lambd))
    logits_t = discriminator(grad_reverse(target_features, lambd))
    loss = 0.5 * (
        F.binary_cross_entropy_with_logits(logits_s.float(), torch.zeros_like(logits_s, dtype=torch.float32))
        + F.binary_cross_entropy_with_logits(logits_t.float(), torch.ones_like(logits_t, dtype=torch.float32))
    )
    with torch.no_grad():
        correct = (logits_s < 0).float().mean() + (logits_t > 0).float().mean()
    return loss, float(correct) / 2.0

"""Per-volume transforms: contrast polarity, normalisation, resizing to the working box.

Order matters and is fixed: polarity is mapped *before* normalisation (an inversion after a min-max
normalisation would not be an inversion of the data), and is applied exactly once per volume.
Masks are resized label-safely (nearest, or one-hot resample then argmax), never trilinear-then-round.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "Normalization",
    "LabelResize",
    "normalize",
    "polarity_factor",
    "resize_volume",
    "resize_labels",
]

Normalization = Literal["zscore", "minmax", "none"]
LabelResize = Literal["nearest", "onehot"]


def normalize(volume: torch.Tensor, method: Normalization = "zscore", eps: float = 1e-6) -> torch.Tensor:
    """Normalise one volume (any shape) over all its voxels: z-score, min-max to [0, 1], or none."""
    x = volume.to(torch.float32)
    if method == "zscore":
        return (x - x.mean()) / (x.std(unbiased=False) + eps)
    if method == "minmax":
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo + eps)
    if method == "none":
        return x
    raise ValueError(f"unknown normalization {method!r}; use zscore, minmax or none")


def polarity_factor(polarity: str, canonical: str | None) -> float:
    """-1.0 when a volume of known ``polarity`` must be inverted to reach ``canonical``, else 1.0.

    Unknown polarity (empty) or ``canonical=None`` leaves the data untouched.
    """
    if canonical is None or polarity in ("", None):
        return 1.0
    if canonical not in ("bright", "dark") or polarity not in ("bright", "dark"):
        raise ValueError(f"polarity must be bright/dark, got {polarity!r} -> {canonical!r}")
    return -1.0 if polarity != canonical else 1.0


def resize_volume(volume: torch.Tensor, box: int | tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resize of ``(D,H,W)``, ``(C,D,H,W)`` or ``(N,C,D,H,W)`` to ``box``."""
    size = (box, box, box) if isinstance(box, int) else tuple(box)
    if tuple(volume.shape[-3:]) == size:
        return volume
    x = volume
    while x.ndim < 5:
        x = x.unsqueeze(0)
    y = F.interpolate(x.to(torch.float32), size=size, mode="trilinear", align_corners=False)
    return y.reshape(*volume.shape[:-3], *size)


def resize_labels(
    labels: torch.Tensor, box: int | tuple[int, int, int], num_classes: int, method: LabelResize = "nearest"
) -> torch.Tensor:
    """Label-safe resize of an integer map ``(D,H,W)`` or ``(N,D,H,W)``.

    ``nearest`` copies the nearest voxel's label; ``onehot`` resamples each class indicator trilinearly and
    takes the argmax, which keeps thin structures better when down-sampling.
    """
    size = (box, box, box) if isinstance(box, int) else tuple(box)
    if tuple(labels.shape[-3:]) == size:
        return labels.to(torch.int64)
    x = labels.to(torch.int64)
    batched = x.ndim == 4
    if not batched:
        x = x.unsqueeze(0)
    if method == "nearest":
        y = F.interpolate(x.unsqueeze(1).to(torch.float32), size=size, mode="nearest-exact").squeeze(1)
        y = y.round().to(torch.int64)
    elif method == "onehot":
        oh = F.one_hot(x, num_classes).permute(0, 4, 1, 2, 3).to(torch.float32)
        y = F.interpolate(oh, size=size, mode="trilinear", align_corners=False).argmax(1)
    else:
        raise ValueError(f"unknown label resize {method!r}; use nearest or onehot")
    return y if batched else y.squeeze(0)

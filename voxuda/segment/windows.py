"""Where the sliding windows go and how much each voxel of a window counts.

Why a Gaussian importance map: a network sees least context at the border of its input, so predictions there
are the least reliable; weighting each window by a Gaussian centred on it (nnU-Net's choice, sigma = patch/8)
lets the central parts of overlapping windows dominate and removes visible seams. The map stays positive
everywhere, so voxels covered only by window borders (tomogram edges) still get a prediction.
"""

from __future__ import annotations

import numpy as np

__all__ = ["window_starts", "importance_map"]


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of windows of ``patch`` voxels covering ``0..size-1`` with at least ``overlap``.

    The stride is ``round(patch * (1 - overlap))`` (at least 1); the last window is moved back to end exactly
    at ``size``, so no window reaches outside the volume. An axis shorter than the patch gets one window at 0
    (the caller pads the data to the patch size).
    """
    if size < 1 or patch < 1:
        raise ValueError(f"window_starts needs a positive size and patch, got size={size}, patch={patch}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    if size <= patch:
        return [0]
    stride = max(1, int(round(patch * (1.0 - overlap))))
    starts = list(range(0, size - patch, stride))
    starts.append(size - patch)
    return starts


def importance_map(patch: int, kind: str = "gaussian", sigma_scale: float = 0.125) -> np.ndarray:
    """A ``(patch, patch, patch)`` float32 weight map: ``gaussian`` or ``constant`` (plain averaging)."""
    if kind == "constant":
        return np.ones((patch, patch, patch), dtype=np.float32)
    if kind != "gaussian":
        raise ValueError(f"unknown importance map {kind!r}; use gaussian or constant")
    centre = (patch - 1) / 2.0
    sigma = max(patch * sigma_scale, 1e-3)
    axis = np.exp(-0.5 * ((np.arange(patch, dtype=np.float64) - centre) / sigma) ** 2)
    weights = axis[:, None, None] * axis[None, :, None] * axis[None, None, :]
    weights /= weights.max()
    # a floor only against underflow: any larger floor would let window corners (where three small factors
    # multiply) outweigh a neighbour's nearly-central prediction
    weights = np.maximum(weights, 1e-20)
    return weights.astype(np.float32)

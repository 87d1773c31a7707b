"""A 3D median-filter denoiser, applied per volume and channel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import numpy as np
from scipy import ndimage

if TYPE_CHECKING:  # torch is imported when the denoiser runs, not when voxuda loads the plugin
    import torch


@attrs.define(kw_only=True)
class MedianDenoiserConfig:
    """3D median filter over a cubic window."""

    size: int = attrs.field(default=3, metadata={"help": "window side in voxels (odd)"})

    @size.validator
    def _check_size(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1 or value % 2 == 0:
            raise ValueError(f"size must be a positive odd integer, got {value}")


class MedianDenoiser:
    """Callable on ``(N, C, D, H, W)`` torch tensors, returning the same shape, dtype and device."""

    name = "median"

    def __init__(self, config: MedianDenoiserConfig | None = None) -> None:
        self.config = config or MedianDenoiserConfig()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if x.ndim != 5:
            raise ValueError(f"median denoiser expects (N, C, D, H, W), got shape {tuple(x.shape)}")
        array = x.detach().cpu().numpy()
        out = np.empty_like(array)
        for index in np.ndindex(array.shape[:2]):
            out[index] = ndimage.median_filter(array[index], size=self.config.size, mode="nearest")
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)

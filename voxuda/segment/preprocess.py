"""The training preprocessing, applied to whole-tomogram patches the same way.

Training (``voxuda.data.datasets``) prepares every subtomogram as: polarity mapped to the canonical one (an
inversion, exactly once, *before* normalisation), then normalised over its own voxels (z-score by default),
then resized to the working box. At inference the network must see inputs with the same statistics, so:

* ``scope="patch"`` (default) normalises every window over its own voxels, exactly like a training
  subtomogram of the same size. This is what the network was trained on; it also adapts to slow intensity
  drifts across a large tomogram. Its cost is that a window of pure background is stretched to unit variance,
  which the network has seen too (training crops are mostly background) and the overlap blending smooths.
* ``scope="tomogram"`` normalises with statistics of the whole tomogram (one streaming pass; mean/std or
  min/max), for models trained on crops normalised that way.

Input alignment (``[data] alignment``, docs/data.md) comes after normalisation, window by window, as the
*target* domain with the statistics the run recorded: training aligned every normalised subtomogram the same
way, so a window of the training box size gets exactly the training transform. The aligner normalises its
output again (per window), whatever ``scope`` normalised its input.

Resampling to the model's voxel size is done by :class:`~voxuda.segment.source.ResampledSource` before
patches are cut, so the order is the training order (polarity, normalisation per patch, at the model's grid)
up to the interchange of resampling and a global linear map, which commute.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import numpy as np
import torch

from voxuda.data.transforms import normalize
from voxuda.segment.source import PlaneSource

__all__ = ["Preprocessing", "TomogramStats", "tomogram_stats"]

Scope = Literal["patch", "tomogram"]
Normalization = Literal["zscore", "minmax", "none"]


@attrs.frozen
class TomogramStats:
    """Streaming statistics of a whole tomogram (float64 accumulation)."""

    mean: float
    std: float
    minimum: float
    maximum: float


def tomogram_stats(source: PlaneSource, band: int = 16) -> TomogramStats:
    """One pass over ``source`` in bands of ``band`` planes; memory is one band."""
    total = squares = 0.0
    lo, hi = np.inf, -np.inf
    depth = source.shape[0]
    for z0 in range(0, depth, band):
        planes = source.read_planes(z0, min(z0 + band, depth)).astype(np.float64)
        total += float(planes.sum())
        squares += float(np.square(planes).sum())
        lo, hi = min(lo, float(planes.min())), max(hi, float(planes.max()))
        source.release()
    n = float(np.prod(source.shape))
    mean = total / n
    return TomogramStats(mean, float(np.sqrt(max(squares / n - mean * mean, 0.0))), lo, hi)


@attrs.define
class Preprocessing:
    """Polarity, normalisation, optional input aligner and optional input denoiser, on batches of patches.

    ``aligner`` is a :class:`voxuda.align.Aligner` (applied as the target domain) or any callable on
    ``(N, C, D, H, W)`` tensors.
    """

    normalization: Normalization = "zscore"
    scope: Scope = "patch"
    invert: bool = False
    denoiser: Any = None
    aligner: Any = None
    stats: TomogramStats | None = None
    eps: float = 1e-6

    def __attrs_post_init__(self) -> None:
        if self.normalization not in ("zscore", "minmax", "none"):
            raise ValueError(f"unknown normalization {self.normalization!r}; use zscore, minmax or none")
        if self.scope not in ("patch", "tomogram"):
            raise ValueError(f"unknown normalization scope {self.scope!r}; use patch or tomogram")

    def prepare(self, source: PlaneSource) -> None:
        """Compute whole-tomogram statistics when ``scope`` is ``tomogram`` (one streaming pass)."""
        if self.scope == "tomogram" and self.normalization != "none" and self.stats is None:
            self.stats = tomogram_stats(source)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """``(N, C, D, H, W)`` raw patches -> network input."""
        x = batch.to(torch.float32)
        if self.invert:
            x = -x
        if self.normalization != "none":
            if self.scope == "patch":
                x = torch.stack([normalize(v, self.normalization, self.eps) for v in x])
            else:
                x = self._global(x)
        if self.aligner is not None:
            with torch.no_grad():
                x = self.aligner(x)
        if self.denoiser is not None:
            with torch.no_grad():
                x = self.denoiser(x)
        return x

    def _global(self, x: torch.Tensor) -> torch.Tensor:
        if self.stats is None:
            raise RuntimeError("Preprocessing.prepare(source) must run before tomogram-scope normalisation")
        s = self.stats
        sign = -1.0 if self.invert else 1.0
        if self.normalization == "zscore":
            return (x - sign * s.mean) / (s.std + self.eps)
        lo, hi = (-s.maximum, -s.minimum) if self.invert else (s.minimum, s.maximum)
        return (x - lo) / (hi - lo + self.eps)

"""A synthetic tomogram generator with planted particles and ground truth, shared by the segment tests."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import torch
from torch import nn


def planted_tomogram(shape: tuple[int, int, int], seed: int = 0, radius: float = 4.0, spacing: int = 14,
                     noise: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """Bright spheres on a jittered lattice plus Gaussian noise: ``(volume float32, labels int8)``."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.int8)
    density = np.zeros(shape, dtype=np.float32)
    reach = int(np.ceil(3 * radius))
    for cz in range(spacing // 2, shape[0], spacing):
        for cy in range(spacing // 2, shape[1], spacing):
            for cx in range(spacing // 2, shape[2], spacing):
                c = np.array([cz, cy, cx]) + rng.uniform(-2, 2, 3)
                r = radius * rng.uniform(0.8, 1.2)
                lo = [max(0, int(v) - reach) for v in c]
                hi = [min(n, int(v) + reach + 1) for v, n in zip(c, shape)]
                box = tuple(slice(a, b) for a, b in zip(lo, hi))
                zz, yy, xx = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
                d2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
                labels[box][d2 <= r * r] = 1
                density[box] += np.exp(-d2 / (2 * (0.6 * r) ** 2)).astype(np.float32)
    volume = density + noise * rng.standard_normal(shape).astype(np.float32)
    return volume.astype(np.float32), labels


def write_mrc(path: Path, data: np.ndarray, voxel: tuple[float, float, float] = (10.0, 10.0, 10.0),
              origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Path:
    """Write ``data`` with voxel size and origin given in (z, y, x) order."""
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (voxel[2], voxel[1], voxel[0])
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin[2], origin[1], origin[0]
    return path


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred.astype(bool), truth.astype(bool)
    return float(2 * np.logical_and(p, t).sum() / max(p.sum() + t.sum(), 1))


class ThresholdPredictor(nn.Module):
    """A handcrafted 'model': 3^3 box smoothing of the (normalised) input, then a threshold, as 2 logits."""

    def __init__(self, threshold: float = 0.45, gain: float = 4.0) -> None:
        super().__init__()
        self.smooth = nn.Conv3d(1, 1, 3, padding=1, bias=False)
        nn.init.constant_(self.smooth.weight, 1.0 / 27)
        self.threshold = threshold
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.smooth(x)
        return torch.cat([torch.zeros_like(s), self.gain * (s - self.threshold)], dim=1)


class ArraySink:
    """A plane sink that keeps everything in memory (the reference for the slab writer)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = shape
        self.probs: np.ndarray | None = None
        self.next = 0
        self.finished = False

    def put(self, z0: int, probs: np.ndarray) -> None:
        assert z0 == self.next, "planes must arrive in order"
        if self.probs is None:
            self.probs = np.zeros((probs.shape[0], *self.shape), dtype=np.float32)
        self.probs[:, z0:z0 + probs.shape[1]] = probs
        self.next = z0 + probs.shape[1]

    def finish(self) -> None:
        self.finished = True

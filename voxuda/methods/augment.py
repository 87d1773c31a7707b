"""Random 3D flips and 90-degree rotations that can be applied identically to volumes, labels and masks.

Self-training needs the student's augmented view and the teacher's pseudo-labels in the same frame: sample one
:class:`FlipRot3D` per volume with a ``torch.Generator`` (deterministic by seed, checkpointable), then
apply it to the volume ``(N, C, D, H, W)``, the labels ``(N, D, H, W)`` and the confidence mask alike. Only
the last three axes are touched, so any leading layout works. Rotations use only planes whose two sides are
equal, so a batch keeps one shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

# rotation planes as pairs of spatial axes (0 = D, 1 = H, 2 = W)
_PLANES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))


@attrs.frozen
class FlipRot3D:
    """Flip the spatial axes in ``flips`` (after) rotating ``k`` quarter turns in spatial ``plane``."""

    flips: tuple[bool, bool, bool] = (False, False, False)
    k: int = 0
    plane: tuple[int, int] = (1, 2)

    def apply(self, x: Tensor) -> Tensor:
        """Transform the last three axes of ``x`` (volume, label or mask of one sample or a batch)."""
        offset = x.ndim - 3
        if self.k % 4:
            x = torch.rot90(x, self.k, dims=(offset + self.plane[0], offset + self.plane[1]))
        axes = [offset + i for i, flip in enumerate(self.flips) if flip]
        if axes:
            x = torch.flip(x, dims=axes)
        return x

    def invert(self, x: Tensor) -> Tensor:
        """Undo :meth:`apply` (flips first, then the opposite rotation)."""
        offset = x.ndim - 3
        axes = [offset + i for i, flip in enumerate(self.flips) if flip]
        if axes:
            x = torch.flip(x, dims=axes)
        if self.k % 4:
            x = torch.rot90(x, -self.k, dims=(offset + self.plane[0], offset + self.plane[1]))
        return x


def sample_flip_rot(
    spatial_shape: Sequence[int], generator: torch.Generator, *, flip: bool = True, rotate: bool = True
) -> FlipRot3D:
    """Draw one transform: each flip with probability 1/2, a uniform quarter-turn in a valid plane."""
    draws = torch.randint(0, 2, (3,), generator=generator).tolist()
    flips = tuple(bool(d) and flip for d in draws)
    planes = [p for p in _PLANES if spatial_shape[p[0]] == spatial_shape[p[1]]]
    k, plane = 0, (1, 2)
    if rotate and planes:
        plane = planes[int(torch.randint(0, len(planes), (1,), generator=generator))]
        k = int(torch.randint(0, 4, (1,), generator=generator))
    return FlipRot3D(flips=flips, k=k, plane=plane)  # type: ignore[arg-type]


def sample_batch_transforms(
    batch_size: int, spatial_shape: Sequence[int], generator: torch.Generator, **kwargs: bool
) -> list[FlipRot3D]:
    """One independent transform per sample of a batch."""
    return [sample_flip_rot(spatial_shape, generator, **kwargs) for _ in range(batch_size)]


def apply_batch(x: Tensor, transforms: Sequence[FlipRot3D]) -> Tensor:
    """Apply ``transforms[i]`` to sample ``x[i]`` (first axis is the batch; the last three are spatial)."""
    if len(transforms) != x.shape[0]:
        raise ValueError(f"{len(transforms)} transforms for a batch of {x.shape[0]}")
    return torch.stack([t.apply(sample) for t, sample in zip(transforms, x)])


def invert_batch(x: Tensor, transforms: Sequence[FlipRot3D]) -> Tensor:
    """Undo :func:`apply_batch`."""
    return torch.stack([t.invert(sample) for t, sample in zip(transforms, x)])


def augment_pair(
    volume: Tensor, label: Tensor | None, generator: torch.Generator, **kwargs: bool
) -> tuple[Tensor, Tensor | None, list[FlipRot3D]]:
    """Augment a batch ``(N, C, D, H, W)`` and its labels ``(N, D, H, W)`` with the same transforms."""
    transforms = sample_batch_transforms(volume.shape[0], volume.shape[-3:], generator, **kwargs)
    out_label = apply_batch(label, transforms) if label is not None else None
    return apply_batch(volume, transforms), out_label, transforms

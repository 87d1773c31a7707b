"""voxuda's one augmentation module: random orientations (flips and axis permutations) that can be applied
identically to volumes, labels and masks, wedge-preserving by default, plus a photometric jitter.

Self-training needs the student's augmented view and the teacher's pseudo-labels in the same frame: sample one
:class:`FlipRot3D` per volume with a ``torch.Generator`` (deterministic by seed, checkpointable), then apply
it to the volume ``(N, C, D, H, W)``, the labels ``(N, D, H, W)`` and the confidence mask alike. Only the last
three axes are touched, so any leading layout works.

**Geometry of the missing wedge.** Volumes are ``(D, H, W) = (z, y, x)``: the beam is along z at zero tilt and
the tilt axis is y (``voxuda/simulate/wedge.py``). A tilt ``theta`` samples the central Fourier plane
spanned by ``k_y`` and ``(k_x, k_z) = (cos theta, sin theta)``, so a Fourier point is measured when the angle
``atan(k_z / k_x)``, folded to (-90, 90], lies in the tilt range; the mask does not depend on ``k_y``. A flip
of a real-space axis negates that frequency, a permutation of axes permutes the frequencies. Hence:

- flipping H (y) keeps every wedge: the mask ignores ``k_y``;
- flipping D and W together (a 180-degree turn in the (D, W) plane) maps ``(k_z, k_x)`` to ``(-k_z, -k_x)``,
  the same line through the origin: it keeps every wedge, symmetric or not;
- flipping D (or W) alone maps the angle ``a`` to ``-a``: it keeps a wedge with a *symmetric* tilt range
  (e.g. +-60 degrees) but mirrors an asymmetric one (e.g. -50/+64, the ``insitu_ribosome`` preset);
- any quarter turn swaps two axes: in (H, W) it moves the tilt axis from y to x, in (D, H) or (D, W) it moves
  the beam axis. No permutation keeps the wedge.

``orientations`` chooses the set sampled from, uniformly:

- ``"wedge"`` (default): the 4 orientations {identity, flip H} x {identity, 180-degree turn in (D, W)},
  which keep the missing wedge whatever the tilt range (tested on wedge masks: tests/methods/test_augment.py);
- ``"flips"``: the 8 flip combinations; wedge-preserving only for symmetric tilt ranges;
- ``"all"``: the 48 orientations of the cube (6 axis permutations x 8 flips), for isotropic data (no wedge);
  permutations are limited to axes of equal size, so a batch keeps one shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal, get_args

import attrs
import torch
from torch import Tensor

Orientations = Literal["wedge", "flips", "all"]
ORIENTATIONS: tuple[str, ...] = get_args(Orientations)

_IDENTITY_AXES = (0, 1, 2)
_NO_FLIPS = (False, False, False)


@attrs.frozen
class FlipRot3D:
    """An orientation of the three spatial axes: reorder them as ``axes`` (a permutation of 0 = D, 1 = H,
    2 = W; output axis ``i`` is input axis ``axes[i]``), then flip the output axes marked in ``flips``.

    Every one of the 48 symmetries of the cube (rotations and reflections) is one such pair. The default is
    the identity.
    """

    flips: tuple[bool, bool, bool] = _NO_FLIPS
    axes: tuple[int, int, int] = _IDENTITY_AXES

    def __attrs_post_init__(self) -> None:
        if sorted(self.axes) != [0, 1, 2] or len(self.flips) != 3:
            raise ValueError(f"FlipRot3D: axes must permute (0, 1, 2) and flips have 3 entries, got {self}")

    @property
    def is_identity(self) -> bool:
        return self.axes == _IDENTITY_AXES and not any(self.flips)

    def apply(self, x: Tensor) -> Tensor:
        """Transform the last three axes of ``x`` (volume, label or mask of one sample or a batch)."""
        offset = x.ndim - 3
        if self.axes != _IDENTITY_AXES:
            x = x.permute(*range(offset), *(offset + a for a in self.axes))
        dims = [offset + i for i, flip in enumerate(self.flips) if flip]
        return torch.flip(x, dims=dims) if dims else x

    def invert(self, x: Tensor) -> Tensor:
        """Undo :meth:`apply` (flips first, then the inverse permutation)."""
        offset = x.ndim - 3
        dims = [offset + i for i, flip in enumerate(self.flips) if flip]
        if dims:
            x = torch.flip(x, dims=dims)
        if self.axes != _IDENTITY_AXES:
            inverse = tuple(self.axes.index(i) for i in range(3))
            x = x.permute(*range(offset), *(offset + a for a in inverse))
        return x


def orientation_set(spatial_shape: Sequence[int], orientations: Orientations = "wedge") -> list[FlipRot3D]:
    """Every orientation of ``orientations`` (see the module doc) valid for volumes of ``spatial_shape``."""
    if orientations == "wedge":
        return [FlipRot3D(flips=(dw, h, dw)) for dw in (False, True) for h in (False, True)]
    all_flips = [tuple(f) for f in itertools.product((False, True), repeat=3)]
    if orientations == "flips":
        return [FlipRot3D(flips=f) for f in all_flips]  # type: ignore[arg-type]
    if orientations == "all":
        shape = tuple(int(s) for s in spatial_shape)
        perms = [p for p in itertools.permutations(range(3))
                 if all(shape[p[i]] == shape[i] for i in range(3))]
        return [FlipRot3D(flips=f, axes=p) for p in perms for f in all_flips]  # type: ignore[arg-type]
    raise ValueError(f"orientations must be one of {', '.join(ORIENTATIONS)}, got {orientations!r}")


def sample_flip_rot(
    spatial_shape: Sequence[int], generator: torch.Generator, orientations: Orientations = "wedge"
) -> FlipRot3D:
    """Draw one orientation uniformly from :func:`orientation_set`."""
    choices = orientation_set(spatial_shape, orientations)
    return choices[int(torch.randint(0, len(choices), (1,), generator=generator))]


def sample_batch_transforms(
    batch_size: int, spatial_shape: Sequence[int], generator: torch.Generator,
    orientations: Orientations = "wedge",
) -> list[FlipRot3D]:
    """One independent orientation per sample of a batch."""
    choices = orientation_set(spatial_shape, orientations)
    picks = torch.randint(0, len(choices), (batch_size,), generator=generator).tolist()
    return [choices[i] for i in picks]


def apply_batch(x: Tensor, transforms: Sequence[FlipRot3D]) -> Tensor:
    """Apply ``transforms[i]`` to sample ``x[i]`` (first axis is the batch; the last three are spatial)."""
    if len(transforms) != x.shape[0]:
        raise ValueError(f"{len(transforms)} transforms for a batch of {x.shape[0]}")
    return torch.stack([t.apply(sample) for t, sample in zip(transforms, x)])


def invert_batch(x: Tensor, transforms: Sequence[FlipRot3D]) -> Tensor:
    """Undo :func:`apply_batch`."""
    return torch.stack([t.invert(sample) for t, sample in zip(transforms, x)])


def augment_pair(
    volume: Tensor, label: Tensor | None, generator: torch.Generator, orientations: Orientations = "wedge"
) -> tuple[Tensor, Tensor | None, list[FlipRot3D]]:
    """Augment a batch ``(N, C, D, H, W)`` and its labels ``(N, D, H, W)`` with the same orientations."""
    transforms = sample_batch_transforms(volume.shape[0], volume.shape[-3:], generator, orientations)
    out_label = apply_batch(label, transforms) if label is not None else None
    return apply_batch(volume, transforms), out_label, transforms


def intensity_jitter(
    volume: Tensor, generator: torch.Generator, scale: float = 0.1, shift: float = 0.1, noise: float = 0.0
) -> Tensor:
    """Per-sample gain ``1 + U(-scale, scale)``, offset ``U(-shift, shift)`` and optional white noise of std
    ``noise``, on ``(N, ...)`` volumes; labels are unaffected."""
    n = volume.shape[0]
    shape = (n,) + (1,) * (volume.ndim - 1)
    gain = 1 + (torch.rand(shape, generator=generator) * 2 - 1) * scale
    offset = (torch.rand(shape, generator=generator) * 2 - 1) * shift
    out = volume * gain.to(volume) + offset.to(volume)
    if noise > 0:
        out = out + noise * torch.randn(volume.shape, generator=generator).to(volume)
    return out


__all__ = ["ORIENTATIONS", "FlipRot3D", "Orientations", "apply_batch", "augment_pair", "intensity_jitter",
           "invert_batch", "orientation_set", "sample_batch_transforms", "sample_flip_rot"]

"""A per-volume cache for the teacher's denoised target input.

Mean-teacher methods (and Vox-UDA) give the teacher ``teacher_denoiser(target)``. voxuda's denoisers are
deterministic functions of one volume and their settings (every voxel of the output depends only on that
volume: no batch statistics, no randomness), and target volumes are fed unaugmented (augmentation, when on,
is applied to the student's view after the teacher has labelled the raw batch). So a target volume's
denoised version never changes during a run, yet the trainer draws each target volume many times (the quick
suite: 200 volumes, 800 draws in 100 steps). :class:`DenoisedVolumeCache` computes it at the first draw and
reuses it afterwards; results are bit-identical to denoising every batch
(tests/engine/test_throughput_equivalence.py).

Keys are the volumes' positions in the run's target train split (``TargetBatch.index``). Safeguards: the
cache empties itself when the denoiser object, its settings (its attrs config, compared at every call),
or the volumes' dtype, device or shape change, and each entry remembers the float64 sum of the volume it was
computed from, so a position that comes back with different content is recomputed rather than served stale.
It never holds more than ``budget_bytes``; past that, misses are computed and not stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor


def cacheable_denoiser(denoiser: Any) -> bool:
    """True for voxuda's own non-identity denoisers: deterministic per volume and fully described by an
    attrs ``config``. Plugin denoisers are not assumed to be (a network could use batch statistics)."""
    module = type(denoiser).__module__
    name = getattr(denoiser, "name", "")
    return module.startswith("voxuda.denoisers") and name != "identity" and attrs.has(
        type(getattr(denoiser, "config", None)))


def settings_key(denoiser: Any) -> tuple[Any, ...]:
    """What the cached results depend on besides the volume: the denoiser object and its settings."""
    config = getattr(denoiser, "config", None)
    settings = repr(attrs.asdict(config)) if config is not None and attrs.has(type(config)) else repr(config)
    return (id(denoiser), type(denoiser).__qualname__, settings)


class DenoisedVolumeCache:
    """Denoised volumes keyed by position in the target split (see the module doc)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = int(budget_bytes)
        self._entries: dict[int, tuple[Tensor, float]] = {}
        self._key: tuple[Any, ...] | None = None
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._key = None

    def lookup(self, volume: Tensor, index: Tensor, denoise: Callable[[Tensor], Tensor],
               key: tuple[Any, ...]) -> Tensor:
        """``denoise(volume)``, row by row from the cache where possible; misses go through ``denoise`` in one
        call. ``index[i]`` is the split position of ``volume[i]``; ``key`` is :func:`settings_key`."""
        if index.shape != volume.shape[:1]:
            raise ValueError(f"cache index of shape {tuple(index.shape)} for {volume.shape[0]} volumes")
        full_key = (*key, volume.dtype, volume.device, tuple(volume.shape[1:]))
        if full_key != self._key:
            self.clear()
            self._key = full_key
        positions = [int(p) for p in index.tolist()]
        sums = volume.detach().flatten(1).double().sum(dim=1).tolist()
        rows: list[Tensor | None] = []
        missing: list[int] = []
        for row, (position, total) in enumerate(zip(positions, sums)):
            entry = self._entries.get(position)
            if entry is not None and entry[1] == total:
                rows.append(entry[0])
            else:
                rows.append(None)
                missing.append(row)
        self.hits += len(positions) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = denoise(volume[missing])
            for j, row in enumerate(missing):
                result = computed[j]
                rows[row] = result
                self._store(positions[row], result, sums[row])
        return torch.stack(rows)  # type: ignore[arg-type]

    def _store(self, position: int, result: Tensor, total: float) -> None:
        old = self._entries.pop(position, None)
        if old is not None:
            self._bytes -= old[0].numel() * old[0].element_size()
        size = result.numel() * result.element_size()
        if self._bytes + size > self.budget_bytes:
            return
        self._entries[position] = (result.clone(), total)  # a copy: never a view into a batch tensor
        self._bytes += size

"""RNG states round-trip through a checkpoint whatever device it was mapped to."""

from __future__ import annotations

import random

import numpy as np
import torch

from voxuda.engine.checkpoint import capture_rng, restore_rng


class _Elsewhere(torch.Tensor):
    """Stands in for a tensor mapped to a GPU on a machine without one: only ``.cpu()`` gives its data."""

    def cpu(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        return torch.Tensor(self).clone()

    def numpy(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        raise TypeError("can't convert a device tensor to numpy; use .cpu()")


def test_restore_reads_the_states_through_cpu() -> None:
    generator = torch.Generator().manual_seed(3)
    state = capture_rng(generator)
    want = (torch.rand(3), torch.rand(3, generator=generator), random.random(), np.random.rand())
    mapped = {key: value.as_subclass(_Elsewhere) for key, value in state.items()}
    restore_rng(mapped, generator)
    got = (torch.rand(3), torch.rand(3, generator=generator), random.random(), np.random.rand())
    assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1]) and want[2:] == got[2:]

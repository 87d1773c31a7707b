"""The base class of the noise models ``none``, ``gaussian``, ``ngm``, ``spectral_ngm`` and ``skew_matched``.

A method only ever talks to the :class:`voxuda.protocols.NoiseModel` protocol, so swapping the paper's
white NGM for the spectrally shaped variant (or for no noise at all) is a config change. Models are plain
objects, not ``nn.Module``s: they hold a few estimated statistics, no trainable parameters, and must not
appear in the optimiser."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class NoiseModelBase:
    """Base class: no fitting, no noise. Subclasses override what they need; together they implement the
    :class:`voxuda.protocols.NoiseModel` protocol, the contract that callers rely on.

    Attributes:
        needs_target: True if :meth:`fit` must see target volumes before the first call.
        n_fit_samples: how many target volumes :meth:`fit` wants (0 when ``needs_target`` is False; with
            ``needs_target``, 0 asks for every target-train volume once, as Vox-UDA passes them).
        refit_every: re-estimate every K optimiser steps (K > 0), or ``None`` to fit once.
    """

    needs_target: bool = False
    n_fit_samples: int = 0
    refit_every: int | None = None

    def fit(self, target_volumes: Tensor) -> None:
        """Estimate statistics from target volumes ``(N, C, D, H, W)``; the base model needs none."""

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x

    def state(self) -> dict[str, Any]:
        """Plain, JSON-ready statistics for ``run.json`` and metrics (e.g. the estimated ``sigma2``)."""
        return {}

    @property
    def fitted(self) -> bool:
        return True

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`load_state_dict` needs to restore the fitted statistics (checkpoints, resume)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict`; the base model has none."""


#: The former name of :class:`NoiseModelBase`, kept for plugins that subclass it; the *contract* is the
#: protocol :class:`voxuda.protocols.NoiseModel`.
NoiseModel = NoiseModelBase


def gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` on the generator's device.

    Drawing on the generator's device and moving the result keeps a CPU generator usable (and the stream
    deterministic) when ``x`` lives on a GPU.
    """
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32)
    return noise.to(device=x.device, dtype=x.dtype)


def check_volumes(x: Tensor, what: str) -> None:
    if x.ndim != 5:
        raise ValueError(f"{what}: expected volumes (N, C, D, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{what}: got no volumes")

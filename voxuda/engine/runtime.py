"""Process set-up shared by training, evaluation and segmentation: the device and the random seeds.

Why a module of its own: the trainer, :mod:`voxuda.engine.evaluate` and :mod:`voxuda.segment.api` all pick a
device the same way (the same ``auto`` rule, the same one-line errors), and evaluation used to import it from
the trainer, which imported evaluation back. Leaf helpers belong below both.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from voxuda.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed the global Python, NumPy and torch generators (what initialisation draws from)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def skip_uninitialized_fill() -> None:
    """Keep deterministic mode from filling every fresh allocation with NaN.

    ``torch.use_deterministic_algorithms(True)`` also turns on ``fill_uninitialized_memory``, a debugging
    guard that writes NaN into every ``torch.empty`` result so that an op reading memory it never wrote would
    show. Ops overwrite those buffers anyway, so results are bit-identical without it
    (tests/engine/test_throughput_equivalence.py), but the fill costs an extra pass over every activation and
    gradient buffer: about a tenth of a quick-size source-only step on CPU (docs/performance.md).
    """
    import torch.utils.deterministic

    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]


def resolve_device(name: str | torch.device, option: str = "trainer.device") -> torch.device:
    """``auto``: CUDA when available, else the CPU; any other name must be a device that exists. ``option``
    names the setting in the error (``--device`` for the commands that run a model)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"{option}: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}: {name!r} requested but CUDA is not available; use auto or cpu")
    return device

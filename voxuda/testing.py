"""Helpers for testing components, meant for plugin authors as much as for voxuda's own tests.

A plugin's method should train through voxuda's real engine (trainer, checkpoints, evaluation) in its own
test-suite; these helpers make that a few lines, on tiny in-memory volumes, in a few CPU seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from voxuda.engine.config import run_config_from_dict
from voxuda.engine.data import DomainSplit, RunData
from voxuda.engine.trainer import RunResult, train


def tiny_split(n: int, seed: int, shift: float = 0.0, scale: float = 1.0, size: int = 8) -> DomainSplit:
    """``n`` random ``size``^3 volumes labelled where the (unshifted) intensity exceeds 0.5.

    ``shift``/``scale`` make a "target" domain whose intensity statistics differ from the source's.
    """
    generator = torch.Generator().manual_seed(seed)
    volume = torch.randn(n, 1, size, size, size, generator=generator)
    label = (volume[:, 0] > 0.5).long()
    meta = [{"id": f"{seed}-{i}", "class": "blob"} for i in range(n)]
    return DomainSplit(scale * volume + shift, label, meta)


def tiny_run_data(size: int = 8) -> RunData:
    """Source and a shifted/scaled target, with train and val splits."""
    return RunData(
        source_train=tiny_split(4, 0, size=size),
        target_train=tiny_split(4, 1, 0.5, 1.5, size=size),
        source_val=tiny_split(2, 2, size=size),
        target_val=tiny_split(2, 3, 0.5, 1.5, size=size),
    )


def train_tiny(
    method: dict[str, Any], out_dir: Path, steps: int = 3, *, size: int = 8
) -> tuple[RunResult, dict[str, Any]]:
    """Train ``method`` (a method table; a 4-8 U-Net unless it names a backbone) for ``steps`` steps with
    ``source_val`` selection and evaluation on the target; returns the result and the run's ``run.json``."""
    config = run_config_from_dict({
        "seed": 0,
        "method": {"backbone": {"name": "unet3d", "widths": [4, 8]}, **method},
        "data": {"root": str(out_dir / "no_dataset"), "box": size},
        "trainer": {"steps": steps, "batch_size": 2, "progress": False, "num_threads": 1},
        "evaluation": {"batch_size": 2, "selection": "source_val"},
    })
    run_dir = out_dir / "run"
    result = train(config, run_dir, data=tiny_run_data(size))
    return result, json.loads((run_dir / "run.json").read_text())

"""Helpers for testing components, meant for plugin authors as much as for voxuda's own tests.

A plugin's method should train through voxuda's real engine (trainer, checkpoints, evaluation) in its own
test-suite; these helpers make that a few lines, on tiny in-memory volumes, in a few CPU seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from voxuda.engine.data import DomainSplit, RunData
from voxuda.engine.pipeline import train_and_evaluate
from voxuda.engine.run_config import run_config_from_dict
from voxuda.engine.trainer import RunResult
from voxuda.jsonio import read_json
from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch, TrainContext

#: ``batches(step)``: the source and target batch of one step
BatchesFn = Callable[[int], tuple[SourceBatch, TargetBatch]]


def tiny_batches(seed: int = 0, n: int = 2, size: int = 8, shift: float = 0.7,
                 scale: float = 0.5) -> tuple[SourceBatch, TargetBatch]:
    """One source batch (labels: the voxels above 0.3) and one target batch ``scale * noise + shift``."""
    g = torch.Generator().manual_seed(seed)
    source = torch.randn(n, 1, size, size, size, generator=g)
    label = (source[:, 0] > 0.3).long()
    target = scale * torch.randn(n, 1, size, size, size, generator=g) + shift
    return SourceBatch(source, label), TargetBatch(target)


def run_steps(method: Any, steps: int, batches: BatchesFn, *, lr: float = 1e-2,
              sample_target: Callable[[int], torch.Tensor] | None = None,
              generator: torch.Generator | None = None, extra: dict[str, Any] | None = None,
              train_mode: bool = False) -> list[StepOutput]:
    """What the trainer does to a method, without files or a data loader: ``on_train_start`` (when a
    ``sample_target`` is given), then per step ``training_step``, backward, an Adam step over
    ``trainable_parameters()`` and ``on_after_optimizer_step``. Returns every step's output.

    Why here: a method's known-answer test needs exactly the trainer's call order (a method that updates
    its teacher or its statistics in the wrong hook fails it), and each test-suite (voxuda's and each
    plugin's) wrote this loop itself. ``train_mode`` calls ``method.train()`` before each step, as the
    trainer does; ``batches`` is called before the step, so a generator it shares with ``sample_target``
    is consumed in the trainer's order.
    """
    if sample_target is not None:
        method.on_train_start(TrainContext(
            total_steps=steps, device=torch.device("cpu"), sample_target=sample_target,
            generator=generator if generator is not None else torch.Generator().manual_seed(0),
            extra=extra or {}))
    optimiser = torch.optim.Adam(list(method.trainable_parameters()), lr=lr)
    outputs = []
    for step in range(steps):
        source, target = batches(step)
        if train_mode:
            method.train()
        out = method.training_step(source, target, step)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        method.on_after_optimizer_step(step)
        outputs.append(out)
    return outputs


def tiny_split(n: int, seed: int, shift: float = 0.0, scale: float = 1.0, size: int = 8) -> DomainSplit:
    """``n`` random ``size``^3 volumes labelled where the (unshifted) intensity exceeds 0.5.

    ``shift``/``scale`` make a "target" domain whose intensity statistics differ from the source's.
    """
    generator = torch.Generator().manual_seed(seed)
    volume = torch.randn(n, 1, size, size, size, generator=generator)
    label = (volume[:, 0] > 0.5).long()
    meta = [{"id": f"{seed}-{i}", "class": "blob"} for i in range(n)]
    return DomainSplit(scale * volume + shift, label, meta)


def sphere_split(
    n: int, seed: int, *, noise: float, gain: float = 1.0, offset: float = 0.0, size: int = 16
) -> DomainSplit:
    """``n`` volumes with one bright sphere (radius 2.5-3.5 voxels, about 3 % foreground at 16^3) on white
    noise of std ``noise``, z-scored per volume, then multiplied by ``gain`` and shifted by ``offset``.

    Known-answer domain shifts for adaptation tests: a noise-level shift (a noisier target, the scenes drawn
    the same way, so the foreground prior is shared) and a gain/offset shift (which per-volume z-scoring would
    remove, so it is applied afterwards, as a detector or normalisation difference would be).
    """
    generator = torch.Generator().manual_seed(seed)
    axis = torch.arange(size, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"))
    centre = size / 4 + size / 2 * torch.rand(n, 3, 1, 1, 1, generator=generator)
    radius = 2.5 + torch.rand(n, 1, 1, 1, generator=generator)
    label = ((grid[None] - centre) ** 2).sum(dim=1) <= radius**2
    volume = label.float() + noise * torch.randn(n, size, size, size, generator=generator)
    volume = (volume - volume.mean((1, 2, 3), keepdim=True)) / volume.std((1, 2, 3), keepdim=True)
    meta = [{"id": f"{seed}-{i}", "class": "sphere"} for i in range(n)]
    return DomainSplit(gain * volume[:, None] + offset, label.long(), meta)


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
    result = train_and_evaluate(config, run_dir, data=tiny_run_data(size))
    return result, read_json(run_dir / "run.json")

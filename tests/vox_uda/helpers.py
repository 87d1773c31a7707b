"""Tiny synthetic domains, a bare training loop and the ablation-suite reader used by the vox_uda tests.

The loop mirrors the trainer's contract (voxuda/methods/base.py): ``on_train_start``, then per step
``training_step`` -> backward -> optimiser step -> ``on_after_optimizer_step``. It is used instead of the
engine's trainer so that these tests exercise the method alone, on 16^3 volumes with a tiny backbone.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from voxuda.api import build_method
from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch, TrainContext
from voxuda.testing import run_steps

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "configs" / "ablations" / "suite.toml"
SIZE = 16
TINY_BACKBONE = {"name": "unet3d", "widths": [4, 8, 8, 8]}


def smooth_fields(n: int, generator: torch.Generator) -> Tensor:
    """Smooth random fields: white noise blurred by three separable 5-tap box filters."""
    x = torch.randn(n, 1, SIZE, SIZE, SIZE, generator=generator)
    kernel = torch.ones(5) / 5
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = 5
        x = torch.nn.functional.conv3d(x, kernel.view(shape), padding="same")
    return x / x.std()


def tiny_domains(seed: int = 0, n: int = 8) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(source volume, source label, target volume, target label): the target is noisier and dimmer."""
    g = torch.Generator().manual_seed(seed)
    clean_s, clean_t = smooth_fields(n, g), smooth_fields(n, g)
    label_s, label_t = (clean_s > 0.5).long()[:, 0], (clean_t > 0.5).long()[:, 0]
    source = clean_s + 0.3 * torch.randn(clean_s.shape, generator=g)
    target = 0.7 * clean_t + 0.8 * torch.randn(clean_t.shape, generator=g)
    return source, label_s, target, label_t


def tiny_method(**overrides: Any) -> Any:
    """A vox_uda with a tiny U-Net; ``overrides`` are method-config keys (dotted keys reach sub-tables)."""
    params: dict[str, Any] = {"name": "vox_uda", "backbone": dict(TINY_BACKBONE)}
    params.update(overrides)
    return build_method(params)


def target_sampler(target: Tensor, generator: torch.Generator) -> Callable[[int], Tensor]:
    """``sample_target``: ``k`` volumes of ``target`` drawn by the run generator."""

    def sample(k: int) -> Tensor:
        index = torch.randint(0, target.shape[0], (k,), generator=generator)
        return target[index]

    return sample


def start(method: Any, target: Tensor, total_steps: int = 10, seed: int = 0) -> TrainContext:
    """Call ``on_train_start`` with a context whose sampler draws from ``target`` by the run generator."""
    generator = torch.Generator().manual_seed(seed)
    context = TrainContext(total_steps=total_steps, device=torch.device("cpu"),
                           sample_target=target_sampler(target, generator), generator=generator)
    method.on_train_start(context)
    return context


def train(method: Any, steps: int, seed: int = 0, batch: int = 2, lr: float = 3e-3) -> list[StepOutput]:
    """Run ``steps`` optimiser steps on the tiny domains (:func:`voxuda.testing.run_steps`); every output."""
    source, label, target, _ = tiny_domains(seed)
    generator = torch.Generator().manual_seed(seed)

    def batches(step: int) -> tuple[SourceBatch, TargetBatch]:
        i = (step * batch) % source.shape[0]
        return SourceBatch(source[i:i + batch], label[i:i + batch]), TargetBatch(target[i:i + batch])

    return run_steps(method, steps, batches, lr=lr, sample_target=target_sampler(target, generator),
                     generator=generator)


# -- the ablation suite (format: docs/vox_uda.md, "Ablation configs") --------------------------------------
def load_suite() -> dict[str, Any]:
    return tomllib.loads(SUITE.read_text(encoding="utf-8"))


def merge(base: Mapping[str, Any], partial: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``partial`` onto ``base``: tables merge key by key, other values replace. A component
    table whose ``name`` differs from the base's component replaces it (its parameters would not apply)."""
    out = copy.deepcopy(dict(base))
    for key, value in partial.items():
        old = out.get(key)
        if isinstance(old, str) and isinstance(value, Mapping):
            old = {"name": old}
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            if "name" in value and old.get("name") not in (None, value["name"]):
                out[key] = copy.deepcopy(dict(value))
            else:
                out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def ablation_method_table(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[method]`` table of one suite entry merged onto the base config's ``[method]``."""
    suite_dir = SUITE.parent
    base = tomllib.loads((suite_dir / load_suite()["base"]).read_text(encoding="utf-8"))
    partial = tomllib.loads((suite_dir / entry["file"]).read_text(encoding="utf-8"))
    return merge(base, partial)["method"]

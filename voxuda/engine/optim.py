"""Optimiser and learning-rate schedule (linear warm-up, then constant, step or cosine decay).

The optimiser takes a method's parameter groups (:meth:`voxuda.methods.base.Method.optimizer_groups`): each
group's learning rate is ``trainer.lr * lr_scale`` (default scale 1), and the schedule's ``LambdaLR``
multiplies every group by the same factor, so a discriminator at 10x keeps its ratio through warm-up and
decay. The scale stays in the group (and in the optimiser's ``state_dict``), so a resumed run rebuilds the
same groups.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from voxuda.engine.run_config import TrainerConfig


def parameter_groups(params: Iterable[nn.Parameter] | Iterable[Mapping[str, Any]], lr: float) -> list[dict]:
    """Plain parameters become one group; groups get ``lr = lr * lr_scale`` and keep their ``lr_scale``."""
    items = list(params)
    if not items or not isinstance(items[0], Mapping):
        items = [{"params": items}]
    groups = []
    for index, group in enumerate(items):
        if not isinstance(group, Mapping) or "params" not in group:
            got = type(group).__name__
            raise TypeError(f"optimizer group {index}: expected a dict with 'params', got {got}")
        scale = float(group.get("lr_scale", 1.0))
        if not scale > 0:
            raise ValueError(f"optimizer group {index}: lr_scale must be positive, got {scale}")
        groups.append({**group, "params": list(group["params"]), "lr_scale": scale, "lr": lr * scale})
    return groups


def build_optimizer(
    params: Iterable[nn.Parameter] | Iterable[Mapping[str, Any]], cfg: TrainerConfig
) -> torch.optim.Optimizer:
    """The configured optimiser over parameters or parameter groups (see :func:`parameter_groups`)."""
    groups = parameter_groups(params, cfg.lr)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TrainerConfig) -> float:
    """Multiplier of the peak learning rate before optimiser step ``step`` (0-based)."""
    if cfg.warmup and step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        size = cfg.step_size or max(cfg.steps // 3, 1)
        return cfg.step_gamma ** (step // size)
    span = max(cfg.steps - cfg.warmup, 1)
    t = min(max(step - cfg.warmup, 0) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainerConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))

"""The method contract (docs/design: "Method contract").

A method is a ``torch.nn.Module`` that owns its networks and losses. The trainer drives it with plain
method calls (no per-batch hook dispatch):

1. ``on_train_start(context)`` once, with a :class:`TrainContext` (e.g. NGM samples target volumes here);
2. per step: ``out = method.training_step(source, target, step)``; the trainer calls ``out.loss.backward()``,
   clips, steps the optimiser over ``method.optimizer_groups()`` (by default one group holding
   ``method.trainable_parameters()``; a group may carry an ``lr_scale``), then
   ``method.on_after_optimizer_step(step)`` (the EMA teacher update lives there);
3. ``method.predictor()`` is the network used for evaluation and segmentation (student or teacher).

Batches are typed, not string-keyed. Target labels reach a method only if it declares
``uses_target_labels = True`` (the oracle); every other method gets ``TargetBatch.label is None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor, nn


@attrs.frozen
class SourceBatch:
    """Labelled source volumes ``(N, C, D, H, W)`` and integer labels ``(N, D, H, W)``."""

    volume: Tensor
    label: Tensor


@attrs.frozen
class TargetBatch:
    """Target volumes ``(N, C, D, H, W)``; ``label`` only for methods that declare they use it.

    ``index``: each volume's position in the run's target train split (the trainer sets it), so that a method
    can cache per-volume work that does not change during training; None when unknown.
    """

    volume: Tensor
    label: Tensor | None = None
    index: Tensor | None = None


@attrs.define
class StepOutput:
    """What one training step returns: the total loss to back-propagate and named scalars to log."""

    loss: Tensor
    losses: dict[str, float] = attrs.field(factory=dict)
    metrics: dict[str, float] = attrs.field(factory=dict)


@attrs.define
class TrainContext:
    """What a method may need before training starts.

    ``sample_target`` returns ``n`` target volumes ``(n, C, D, H, W)`` drawn with the run's generator
    (labels never included); ``total_steps`` lets methods build schedules (e.g. the DANN lambda).
    """

    total_steps: int
    device: torch.device
    sample_target: Callable[[int], Tensor]
    generator: torch.Generator
    extra: dict[str, Any] = attrs.field(factory=dict)


class Method(nn.Module):
    """Base class with the default behaviour of every hook; subclasses override what they need."""

    #: True only for methods that are allowed to see target labels (the oracle upper bound).
    uses_target_labels: ClassVar[bool] = False
    #: False for methods that never look at target volumes (source-only): the model's input voxel size, which
    #: ``voxuda segment`` resamples tomograms to, is then the source's, not the target's.
    sees_target: ClassVar[bool] = True
    #: Shown next to the method in every result table (e.g. "upper bound").
    flag: ClassVar[str] = ""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def on_train_start(self, context: TrainContext) -> None:
        """Called once before the first step."""

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        raise NotImplementedError

    def on_after_optimizer_step(self, step: int) -> None:
        """Called after each optimiser step (EMA updates)."""

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the trainer's optimiser updates (excludes EMA teachers)."""
        return (p for p in self.parameters() if p.requires_grad)

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups: dicts with ``params`` and an optional ``lr_scale`` (the group's
        learning rate is ``trainer.lr * lr_scale``; the schedule scales every group alike). Together they
        hold exactly :meth:`trainable_parameters`. Default: one group at the trainer's rate."""
        return [{"params": list(self.trainable_parameters())}]

    def predictor(self) -> nn.Module:
        """The network used for evaluation: maps ``(N, C, D, H, W)`` to logits ``(N, K, D, H, W)``."""
        raise NotImplementedError

    def networks(self) -> dict[str, nn.Module]:
        """The method's predicting networks by name (e.g. ``student``, ``teacher``), backbones returning
        ``(logits, features)``. Tables report every one of them, and weight drift is measured on them, so
        that a teacher which never leaves its warm start cannot hide behind the student's name."""
        return {}

    @property
    def reported_network(self) -> str:
        """The key of :meth:`networks` behind :meth:`predictor` (the network a method's table row uses)."""
        return ""

    def components(self) -> dict[str, Any]:
        """Sub-components (name -> provenance dict) to record in ``run.json``."""
        return {}

    def op_backends(self) -> dict[str, str]:
        """Op backend each sub-component filters on (name -> registered backend), for ``run.json``.

        Read from the components themselves (a bilateral denoiser records its backend when it resolves
        one), so the record says what ran, not what the config asked for.  Empty by default."""
        return {}


def groups_with_scaled_module(
    trainable: Iterable[nn.Parameter], module: nn.Module, lr_scale: float
) -> list[dict[str, Any]]:
    """Split ``trainable`` into the parameters outside ``module`` (trainer's rate, first, so the logged
    ``lr`` stays the backbone's) and those inside it (``lr_scale`` times that rate); empty groups are left
    out. Used for discriminators trained from scratch beside a warm-started backbone."""
    inside = {id(p) for p in module.parameters()}
    rest: list[nn.Parameter] = []
    scaled: list[nn.Parameter] = []
    for parameter in trainable:
        (scaled if id(parameter) in inside else rest).append(parameter)
    groups: list[dict[str, Any]] = []
    if rest:
        groups.append({"params": rest})
    if scaled:
        groups.append({"params": scaled, "lr_scale": float(lr_scale)})
    return groups

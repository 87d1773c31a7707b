"""Mean-teacher self-training (Tarvainen and Valpola 2017; the DAFormer-style UDA form).

Per step: supervised CE + Dice on source; then (after ``warmup_steps``) the EMA teacher labels the target,
optionally denoised first (``teacher_denoiser``); the pseudo-label selection (``pseudo_label_selection``:
confidence threshold, CBST-style class balance or a class-proportion prior, in
:mod:`voxuda.methods.pseudo_labels`) decides which voxels count; and the student is trained on an augmented
view of the target against the pseudo-labels moved by the same flips/rotations. ``pseudo_keep_fraction``,
``pseudo_fg_fraction`` (foreground share of the kept labels), ``teacher_fg_fraction`` and ``fg_prior`` are
logged because they are the first thing to look at when self-training stalls or collapses.

Default EMA momentum is 0.99 (teacher half-life about 70 steps), suited to runs of hundreds to a few thousand
steps; the unofficial Vox-UDA reimplementation uses 0.999 for much longer schedules.

The self-training itself (teacher, teacher input, pseudo-labels, the student's view, L_pseudo, EMA) is the
:class:`~voxuda.methods.terms.SelfTrainingTerm` at ``method.self_training``, shared with Vox-UDA; the teacher
is registered as ``method.teacher`` (checkpoint keys ``teacher.*``).
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import nn

from voxuda.checks import non_negative, unit_interval
from voxuda.config import ComponentRef, help_field, ref_field
from voxuda.methods.augment import Orientations
from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch, TrainContext
from voxuda.methods.pseudo_labels import PseudoLabelConfig, PseudoLabelSelector
from voxuda.methods.segmentation import SegmentationMethod
from voxuda.methods.terms import SelfTrainingTerm, TermLogs, attach


@attrs.define
class MeanTeacherConfig(PseudoLabelConfig):
    """Configuration of :class:`MeanTeacher` (pseudo-label selection fields: :class:`PseudoLabelConfig`)."""

    ema_momentum: float = help_field(
        0.99, help="EMA momentum of the teacher (0.99: half-life ~70 steps; use 0.999 for long runs)",
        validator=unit_interval,
    )
    ema_half_life_fraction: float = help_field(
        0.0, help="> 0: ignore ema_momentum and use the momentum whose half-life is this fraction of "
        "trainer.steps (0.2 meets the teacher rule exactly) [I]; 0: use ema_momentum",
        validator=unit_interval)
    ema_ramp: bool = help_field(False, help="use min(momentum, 1 - 1/(step + 2)): early teachers follow fast")
    pseudo_weight: float = help_field(1.0, help="weight of the pseudo-label loss", validator=non_negative)
    pseudo_rampup_steps: int = help_field(
        0, help="steps (after warm-up) over which the pseudo weight ramps up as exp(-5 (1 - t)^2); 0 = none",
        validator=non_negative,
    )
    warmup_steps: int = help_field(0, help="initial steps trained on source only", validator=non_negative)
    augment: bool = help_field(
        True, help="random orientations of the student's target view; pseudo-labels follow (methods/augment)")
    augment_orientations: Orientations = help_field(
        "wedge", help="wedge: flips of y and 180-degree (z, x) turns, which keep the missing wedge [I]; "
        "flips: all 8 flips (symmetric tilt ranges only); all: 48 orientations (isotropic data)")
    teacher_denoiser: ComponentRef = ref_field(
        "identity", kind="denoiser", help="denoiser before the teacher")
    teacher_input_cache_mb: int = help_field(
        512, help="memory (MiB) for keeping each target volume's denoised teacher input after its first use "
        "(exact: voxuda's denoisers are deterministic per volume; methods/volume_cache.py) [I]; 0 = off",
        validator=non_negative)
    predict_with: Literal["teacher", "student"] = help_field(
        "teacher", help="network used for evaluation: the EMA teacher (default) or the student"
    )


class MeanTeacher(SegmentationMethod):
    """Student trained on source labels and selected EMA-teacher pseudo-labels on target: supervised loss
    plus ``weight(step)`` times the :class:`~voxuda.methods.terms.SelfTrainingTerm`."""

    config: MeanTeacherConfig

    def __init__(self, config: MeanTeacherConfig) -> None:
        super().__init__(config)
        denoiser = self.build_sub("teacher_denoiser", frozen=True)
        self.self_training = attach(
            self, SelfTrainingTerm(config, self.student, denoiser, PseudoLabelSelector(config)))
        self.generator = torch.Generator().manual_seed(0)

    def on_train_start(self, context: TrainContext) -> None:
        """Share the run's generator (deterministic, checkpointed augmentation), measure the source prior and
        fix the EMA momentum for the run's length."""
        self.generator = context.generator
        self.self_training.on_train_start(context)

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        logits_s, _ = self.student(source.volume)
        seg, parts = self.seg_loss(logits_s, source.label)
        weight = self.self_training.weight(step)
        logs = TermLogs(losses={"seg": float(seg.detach()), **parts}, metrics={"pseudo_weight": weight})
        if weight <= 0.0:
            return logs.output(seg)
        targets = self.self_training.targets(target, self.generator)
        logits_t, _ = self.student(targets.view)
        pseudo, pseudo_logs = self.self_training.loss(logits_t, targets)
        return logs.add(pseudo_logs).output(seg + weight * pseudo)

    def on_after_optimizer_step(self, step: int) -> None:
        self.self_training.update_teacher(step)

    def networks(self) -> dict[str, nn.Module]:
        return {"student": self.student, "teacher": self.self_training.teacher}

    @property
    def reported_network(self) -> str:
        return self.config.predict_with

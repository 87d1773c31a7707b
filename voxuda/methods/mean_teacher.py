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

The pieces are public for reuse (Vox-UDA builds on them): ``teacher``, ``teacher_denoiser``,
``teacher_input(x)``, ``make_pseudo_labels(teacher_input)``, ``pseudo_weight(step)``,
``pseudo_label_loss(...)``, ``pseudo_objective(...)``, ``ema_momentum`` and ``generator``.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from voxuda.checks import non_negative, unit_interval
from voxuda.config import ComponentRef, help_field, ref_field
from voxuda.methods.augment import Orientations, apply_batch, sample_batch_transforms
from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch, TrainContext
from voxuda.methods.common import SegmentationMethod, build_denoiser
from voxuda.methods.ema import effective_momentum, ema_update, make_ema_teacher, ramped_momentum
from voxuda.methods.losses import class_index, masked_cross_entropy
from voxuda.methods.pseudo_labels import (
    PseudoLabelConfig,
    PseudoLabels,
    PseudoLabelSelector,
    selection_metrics,
)
from voxuda.methods.volume_cache import DenoisedVolumeCache, cacheable_denoiser, settings_key


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
    teacher_denoiser: ComponentRef = ref_field("identity", help="denoiser before the teacher")
    teacher_input_cache_mb: int = help_field(
        512, help="memory (MiB) for keeping each target volume's denoised teacher input after its first use "
        "(exact: voxuda's denoisers are deterministic per volume; methods/volume_cache.py) [I]; 0 = off",
        validator=non_negative)
    predict_with: Literal["teacher", "student"] = help_field(
        "teacher", help="network used for evaluation: the EMA teacher (default) or the student"
    )


class MeanTeacher(SegmentationMethod):
    """Student trained on source labels and confident EMA-teacher pseudo-labels on target."""

    config: MeanTeacherConfig

    def __init__(self, config: MeanTeacherConfig) -> None:
        super().__init__(config)
        self.teacher = make_ema_teacher(self.student)
        self.teacher.eval()
        denoiser = build_denoiser(config.teacher_denoiser)
        if isinstance(denoiser, nn.Module):
            for parameter in denoiser.parameters():
                parameter.requires_grad_(False)
        self.teacher_denoiser = denoiser
        self.record_component("teacher_denoiser", "denoiser", config.teacher_denoiser, denoiser)
        self.teacher_input_cache = DenoisedVolumeCache(config.teacher_input_cache_mb * 2**20)
        self.generator = torch.Generator().manual_seed(0)
        self.pseudo_selector = PseudoLabelSelector(config)
        self._ema_momentum = config.ema_momentum

    # -- the reusable pieces ----------------------------------------------------------------------------
    @property
    def ema_momentum(self) -> float:
        """The momentum in use: ``ema_momentum``, or the one set by ``ema_half_life_fraction`` and the run."""
        return self._ema_momentum

    def on_train_start(self, context: TrainContext) -> None:
        """Share the run's generator (deterministic, checkpointed augmentation), measure the source prior and
        fix the EMA momentum for the run's length."""
        self.generator = context.generator
        self.teacher_input_cache.clear()  # positions refer to this run's target split
        self.pseudo_selector.on_train_start(context.extra)
        cfg = self.config
        self._ema_momentum = effective_momentum(cfg.ema_momentum, cfg.ema_half_life_fraction,
                                                context.total_steps)

    def teacher_input(self, volume: Tensor, index: Tensor | None = None) -> Tensor:
        """The teacher's view of a target batch: the (no-grad) denoised volume.

        With ``index`` (the volumes' positions in the target split, ``TargetBatch.index``) each volume is
        denoised once per run and then served from :attr:`teacher_input_cache` (bit-identical results).
        """
        with torch.no_grad():
            cache = self.teacher_input_cache
            if index is None or cache.budget_bytes <= 0 or not cacheable_denoiser(self.teacher_denoiser):
                return self.teacher_denoiser(volume)
            return cache.lookup(volume, index, self.teacher_denoiser, settings_key(self.teacher_denoiser))

    @torch.no_grad()
    def make_pseudo_labels(self, teacher_input: Tensor) -> PseudoLabels:
        """Run the teacher (eval mode) and select pseudo-labels from its softmax."""
        self.teacher.eval()
        logits, _ = self.teacher(teacher_input)
        return self.pseudo_selector.select(logits.float().softmax(dim=1))

    def pseudo_weight(self, step: int) -> float:
        """0 during warm-up, then ``pseudo_weight`` times the optional Gaussian ramp-up."""
        cfg = self.config
        if step < cfg.warmup_steps:
            return 0.0
        if cfg.pseudo_rampup_steps <= 0:
            return cfg.pseudo_weight
        t = min((step - cfg.warmup_steps) / cfg.pseudo_rampup_steps, 1.0)
        return cfg.pseudo_weight * math.exp(-5.0 * (1.0 - t) ** 2)

    def augmented_target(self, volume: Tensor, pseudo: PseudoLabels) -> tuple[Tensor, Tensor, Tensor]:
        """The student's target view, and the pseudo-labels and mask moved by the same transforms."""
        if not self.config.augment:
            return volume, pseudo.labels, pseudo.mask
        transforms = sample_batch_transforms(volume.shape[0], volume.shape[-3:], self.generator,
                                             self.config.augment_orientations)
        return (
            apply_batch(volume, transforms),
            apply_batch(pseudo.labels, transforms),
            apply_batch(pseudo.mask, transforms),
        )

    def pseudo_label_loss(self, student_logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        return masked_cross_entropy(student_logits, labels, mask)

    def pseudo_objective(
        self, student_logits: Tensor, pseudo: PseudoLabels, labels: Tensor, mask: Tensor
    ) -> tuple[Tensor, dict[str, float], dict[str, float]]:
        """The target term (pseudo-label CE, plus the size penalty when ``size_prior_weight > 0``) on the
        student's target logits, with its losses and the selection metrics to log."""
        loss = self.pseudo_label_loss(student_logits, labels, mask)
        losses = {"pseudo": float(loss.detach())}
        metrics = selection_metrics(pseudo)
        size = self.pseudo_selector.size_loss(student_logits)
        if size is not None:
            loss = loss + size
            losses["size_prior"] = float(size.detach())
        with torch.no_grad():
            metrics["student_fg_fraction"] = float((class_index(student_logits) > 0).float().mean())
        return loss, losses, metrics

    # -- the step -----------------------------------------------------------------------------------------
    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        logits_s, _ = self.student(source.volume)
        seg, parts = self.seg_loss(logits_s, source.label)
        weight = self.pseudo_weight(step)
        losses = {"seg": float(seg.detach()), **parts}
        metrics: dict[str, float] = {"pseudo_weight": weight}
        if weight <= 0.0:
            return StepOutput(loss=seg, losses=losses, metrics=metrics)
        pseudo = self.make_pseudo_labels(self.teacher_input(target.volume, target.index))
        student_view, labels, mask = self.augmented_target(target.volume, pseudo)
        logits_t, _ = self.student(student_view)
        pseudo_loss, pseudo_losses, pseudo_metrics = self.pseudo_objective(logits_t, pseudo, labels, mask)
        losses.update(pseudo_losses)
        metrics.update(pseudo_metrics)
        return StepOutput(loss=seg + weight * pseudo_loss, losses=losses, metrics=metrics)

    def on_after_optimizer_step(self, step: int) -> None:
        momentum = self.ema_momentum
        if self.config.ema_ramp:
            momentum = ramped_momentum(momentum, step)
        ema_update(self.teacher, self.student, momentum)

    def trainable_parameters(self):  # type: ignore[no-untyped-def]
        """Student parameters and any other trainable parts, never the teacher or the denoiser."""
        frozen = {id(p) for p in self.teacher.parameters()}
        if isinstance(self.teacher_denoiser, nn.Module):
            frozen |= {id(p) for p in self.teacher_denoiser.parameters()}
        return (p for p in self.parameters() if p.requires_grad and id(p) not in frozen)

    def networks(self) -> dict[str, nn.Module]:
        return {"student": self.student, "teacher": self.teacher}

    @property
    def reported_network(self) -> str:
        return self.config.predict_with

"""DANN (Ganin and Lempitsky 2015) for 3D segmentation: a domain discriminator on the backbone's features, and
an adversarial term for the features whose weight follows ``max_weight * (2 / (1 + exp(-gamma p)) - 1)``.

The adversarial term is, by default, domain confusion (``adversarial_form = "confusion"``: the features are
trained towards a discriminator output of 1/2, Tzeng et al. 2015) rather than Ganin and Lempitsky's gradient
reversal (``"grl"``): through a reversal layer a discriminator at chance pushes the two domains apart, which
we measured on every seed of a known-answer shift (voxuda/methods/discriminator.py, docs/vox_uda.md). The
discriminator, where it looks (one tap, several taps, or the output space), its warm-up and its own
learning-rate group are the shared :class:`~voxuda.methods.terms.AdversarialTerm` (also Vox-UDA's L_dis).
"""

from __future__ import annotations

from typing import Any

import attrs

from voxuda.config import help_field
from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch, TrainContext
from voxuda.methods.discriminator import (
    AdversarialForm,
    AdversarySettings,
    DiscriminatorInput,
    DiscriminatorMode,
    OutputMap,
    form_field,
    hidden_field,
    input_field,
    lr_scale_field,
    output_map_field,
    standardize_field,
    taps_field,
    warmup_field,
)
from voxuda.methods.segmentation import BaseMethodConfig, SegmentationMethod
from voxuda.methods.terms import AdversarialTerm, TermLogs, attach

__all__ = ["DANN", "DANNConfig"]


@attrs.define
class DANNConfig(BaseMethodConfig):
    """Configuration of :class:`DANN`."""

    tap: str = help_field("", help="backbone tap of the 'pooled' discriminator ('' = the backbone's deepest)")
    discriminator_input: DiscriminatorInput = input_field()
    discriminator_taps: tuple[str, ...] = taps_field()
    discriminator_output_map: OutputMap = output_map_field()
    discriminator_mode: DiscriminatorMode = help_field(
        "pooled", help="head on a tap: pooled (one domain logit per volume) or voxel (one per voxel)"
    )
    discriminator_hidden: int = hidden_field()
    discriminator_standardize: bool = standardize_field()
    adversarial_form: AdversarialForm = form_field("confusion")
    discriminator_lr_scale: float = lr_scale_field()
    discriminator_warmup_steps: int = warmup_field()
    adversarial_weight: float = help_field(
        1.0, help="maximum adversarial weight lambda (reversal or confusion), reached at the end of the ramp")
    schedule_gamma: float = help_field(10.0, help="steepness gamma of the schedule 2/(1+exp(-gamma p))-1")


def dann_settings(config: DANNConfig) -> AdversarySettings:
    """DANN's config keys mapped onto the adversarial term's settings (Vox-UDA maps its own onto the same)."""
    return AdversarySettings(
        input=config.discriminator_input, tap=config.tap, taps=tuple(config.discriminator_taps),
        mode=config.discriminator_mode, hidden=config.discriminator_hidden,
        output_map=config.discriminator_output_map, warmup_steps=config.discriminator_warmup_steps,
        lr_scale=config.discriminator_lr_scale, schedule="dann", max_weight=config.adversarial_weight,
        gamma=config.schedule_gamma, tap_key="method.tap", standardize=config.discriminator_standardize,
        form=config.adversarial_form,
    )


class DANN(SegmentationMethod):
    """Source CE + Dice plus the domain-adversarial :class:`~voxuda.methods.terms.AdversarialTerm`."""

    config: DANNConfig

    def __init__(self, config: DANNConfig) -> None:
        super().__init__(config)
        settings = dann_settings(config)
        self.adversarial = attach(self, AdversarialTerm(settings, self.student, config.num_classes,
                                                        loss_key="domain"))

    def on_train_start(self, context: TrainContext) -> None:
        self.adversarial.on_train_start(context)

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """The discriminator trains at ``discriminator_lr_scale`` times the backbone's rate."""
        return self.adversarial.optimizer_groups(self.trainable_parameters())

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        logits_s, feats_s = self.student(source.volume)
        logits_t, feats_t = self.student(target.volume)
        seg, parts = self.seg_loss(logits_s, source.label)
        adversarial, adversarial_logs = self.adversarial(logits_s, feats_s, logits_t, feats_t, step)
        logs = TermLogs(losses={"seg": float(seg.detach()), **parts}).add(adversarial_logs)
        return logs.output(seg + adversarial)

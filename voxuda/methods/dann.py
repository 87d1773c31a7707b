"""DANN (Ganin and Lempitsky 2015) for 3D segmentation: a domain discriminator on the backbone's features, and
an adversarial term for the features whose weight follows ``max_weight * (2 / (1 + exp(-gamma p)) - 1)``.

The adversarial term is, by default, domain confusion (``adversarial_form = "confusion"``: the features are
trained towards a discriminator output of 1/2, Tzeng et al. 2015) rather than Ganin and Lempitsky's gradient
reversal (``"grl"``): through a reversal layer a discriminator at chance pushes the two domains apart, which
we measured on every seed of a known-answer shift (voxuda/methods/discriminator.py, docs/vox_uda.md). The
discriminator, where it looks (one tap, several taps, or the output space), its warm-up and its own
learning-rate group are the shared :class:`~voxuda.methods.discriminator.DomainAdversary` (also Vox-UDA's
L_dis).
"""

from __future__ import annotations

from typing import Any

import attrs

from voxuda.config import help_field
from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch, TrainContext, groups_with_scaled_module
from voxuda.methods.common import BaseMethodConfig, SegmentationMethod
from voxuda.methods.discriminator import (
    AdversarialForm,
    AdversarySettings,
    DiscriminatorInput,
    DiscriminatorMode,
    DomainAdversary,
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
    return AdversarySettings(
        input=config.discriminator_input, tap=config.tap, taps=tuple(config.discriminator_taps),
        mode=config.discriminator_mode, hidden=config.discriminator_hidden,
        output_map=config.discriminator_output_map, warmup_steps=config.discriminator_warmup_steps,
        lr_scale=config.discriminator_lr_scale, schedule="dann", max_weight=config.adversarial_weight,
        gamma=config.schedule_gamma, tap_key="method.tap", standardize=config.discriminator_standardize,
        form=config.adversarial_form,
    )


class DANN(SegmentationMethod):
    """Source CE + Dice plus a domain-adversarial loss through gradient reversal."""

    config: DANNConfig

    def __init__(self, config: DANNConfig) -> None:
        super().__init__(config)
        self.discriminator = DomainAdversary(self.student, dann_settings(config), config.in_channels,
                                             config.num_classes)

    @property
    def tap(self) -> str:
        """The first tap the discriminator reads ('' for the output-space discriminator)."""
        return next(iter(self.discriminator.taps), "")

    def on_train_start(self, context: TrainContext) -> None:
        self.discriminator.total_steps = max(int(context.total_steps), 1)

    def adversarial_lambda(self, step: int) -> float:
        return self.discriminator.weight(step)

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """The discriminator trains at ``discriminator_lr_scale`` times the backbone's rate."""
        return groups_with_scaled_module(self.trainable_parameters(), self.discriminator,
                                         self.discriminator.settings.lr_scale)

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        logits_s, feats_s = self.student(source.volume)
        logits_t, feats_t = self.student(target.volume)
        seg, parts = self.seg_loss(logits_s, source.label)
        adversary = self.discriminator(logits_s, feats_s, logits_t, feats_t, step)
        return StepOutput(
            loss=seg + adversary.loss,
            losses={"seg": float(seg.detach()), **parts, "domain": float(adversary.loss.detach())},
            metrics=adversary.metrics(),
        )

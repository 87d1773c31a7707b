"""ADVENT (Vu et al., CVPR 2019) for 3D segmentation.

The segmenter's weighted self-information maps ``I = -p log p`` are low-entropy on the source (where it is
supervised) and high-entropy on the target; a fully convolutional 3D discriminator learns to tell the two
apart and the segmenter learns to fool it, which pushes target predictions to look like confident source ones.
An optional direct entropy term (MinEnt) is added.

voxuda's trainer makes one backward pass per step over one optimiser, while ADVENT alternates a segmenter
update and a discriminator update. Two equivalent single-pass forms are offered:

- ``nonsaturating`` (default, ADVENT's losses): the discriminator is trained on *detached* maps
  (source = 0, target = 1), and the segmenter minimises ``BCE(D(I_t), source)`` evaluated through a
  detached copy of the discriminator's weights, so neither loss leaks into the other's parameters.
- ``grl``: the DANN-style minimax through voxuda's gradient-reversal layer (the segmenter receives
  ``-adversarial_weight`` times the discriminator's gradient on both domains' maps).
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from voxuda.plugin_api import (
    BaseMethodConfig,
    SegmentationMethod,
    SourceBatch,
    StepOutput,
    TargetBatch,
    at_least_one,
    domain_adversarial_loss,
    help_field,
    non_negative,
)
from voxuda_entropy.discriminator import AdventDiscriminator3D
from voxuda_entropy.entropy import linear_ramp, mean_entropy, self_information

AdversarialForm = Literal["nonsaturating", "grl"]


@attrs.define
class AdventConfig(BaseMethodConfig):
    """Configuration of :class:`Advent` (weights default to the paper's lambda_adv = lambda_ent = 0.001)."""

    adversarial_weight: float = help_field(
        0.001, help="weight of the segmenter's adversarial loss on target maps", validator=non_negative
    )
    entropy_weight: float = help_field(
        0.001, help="weight of direct target entropy minimisation (0: AdvEnt alone)", validator=non_negative
    )
    discriminator_loss_weight: float = help_field(
        1.0, help="weight of the discriminator's own loss (its effective learning-rate factor)",
        validator=non_negative,
    )
    adversarial_form: AdversarialForm = help_field(
        "nonsaturating", help="nonsaturating (ADVENT's losses, detached D for the segmenter) or grl"
    )
    discriminator_width: int = help_field(
        16, help="channels of the first discriminator layer", validator=at_least_one
    )
    discriminator_downsamplings: int = help_field(
        3, help="stride-2 convolutions in the discriminator", validator=at_least_one
    )
    ramp_steps: int = help_field(
        0, help="steps over which the adversarial and entropy weights ramp from 0", validator=non_negative
    )


def _bce(logits: Tensor, value: float) -> Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, value))


def nonsaturating_losses(
    discriminator: nn.Module, source_maps: Tensor, target_maps: Tensor
) -> tuple[Tensor, Tensor, float]:
    """ADVENT's two losses in one graph: ``(adversarial, discriminator, accuracy)``.

    ``adversarial`` = BCE of the discriminator calling target maps "source", computed with detached
    discriminator weights (it trains the segmenter only); ``discriminator`` = BCE on detached maps with
    source = 0, target = 1 (it trains the discriminator only).
    """
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    adversarial = _bce(functional_call(discriminator, frozen, (target_maps,)), 0.0)
    logits_s = discriminator(source_maps.detach())
    logits_t = discriminator(target_maps.detach())
    disc = 0.5 * (_bce(logits_s, 0.0) + _bce(logits_t, 1.0))
    with torch.no_grad():
        accuracy = 0.5 * float((logits_s < 0).float().mean() + (logits_t > 0).float().mean())
    return adversarial, disc, accuracy


class Advent(SegmentationMethod):
    """Source CE + Dice, adversarial alignment of self-information maps, and target entropy minimisation."""

    config: AdventConfig

    def __init__(self, config: AdventConfig) -> None:
        super().__init__(config)
        self.discriminator = AdventDiscriminator3D(
            config.num_classes,
            width=config.discriminator_width,
            downsamplings=config.discriminator_downsamplings,
        )

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        cfg = self.config
        logits_s, _ = self.student(source.volume)
        logits_t, _ = self.student(target.volume)
        seg, parts = self.seg_loss(logits_s, source.label)
        ramp = linear_ramp(step, cfg.ramp_steps)
        maps_s, maps_t = self_information(logits_s), self_information(logits_t)
        entropy = mean_entropy(logits_t)
        losses = {"seg": float(seg.detach()), **parts, "entropy": float(entropy.detach())}
        adv_weight = cfg.adversarial_weight * ramp
        if cfg.adversarial_form == "nonsaturating":
            adversarial, disc, accuracy = nonsaturating_losses(self.discriminator, maps_s, maps_t)
            total = seg + adv_weight * adversarial + cfg.discriminator_loss_weight * disc
            losses.update(adversarial=float(adversarial.detach()), discriminator=float(disc.detach()))
        else:
            # domain_adversarial_loss trains D with unit weight and the segmenter with -lambda; scaling the
            # whole term by w keeps D's weight at w and the segmenter's at -adv_weight.
            w = cfg.discriminator_loss_weight
            lambd = adv_weight / w if w > 0 else 0.0
            disc, accuracy = domain_adversarial_loss(self.discriminator, maps_s, maps_t, lambd)
            total = seg + w * disc
            losses["discriminator"] = float(disc.detach())
        total = total + cfg.entropy_weight * ramp * entropy
        return StepOutput(
            loss=total,
            losses=losses,
            metrics={"domain_accuracy": accuracy, "adversarial_weight": adv_weight},
        )

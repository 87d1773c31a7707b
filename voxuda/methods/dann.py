"""DANN (Ganin and Lempitsky 2015) for 3D segmentation: a domain discriminator on one backbone tap, trained
through a gradient-reversal layer whose weight follows ``max_weight * (2 / (1 + exp(-10 p)) - 1)``.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from voxuda.config import help_field
from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch, TrainContext
from voxuda.methods.common import BaseMethodConfig, SegmentationMethod
from voxuda.methods.discriminator import DiscriminatorMode, DomainDiscriminator3D, domain_adversarial_loss
from voxuda.methods.grl import dann_lambda


@attrs.define
class DANNConfig(BaseMethodConfig):
    """Configuration of :class:`DANN`."""

    tap: str = help_field("", help="backbone tap the discriminator reads ('' = the backbone's deepest)")
    discriminator_mode: DiscriminatorMode = help_field(
        "pooled", help="pooled (one domain logit per volume) or voxel (one per voxel)"
    )
    discriminator_hidden: int = help_field(32, help="hidden channels of the discriminator")
    adversarial_weight: float = help_field(1.0, help="maximum gradient-reversal weight (lambda at the end)")
    schedule_gamma: float = help_field(10.0, help="steepness gamma of the schedule 2/(1+exp(-gamma p))-1")


def tap_channels(backbone: nn.Module, tap: str, in_channels: int) -> int:
    """Channels of a backbone tap: from ``backbone.tap_channels`` or, for plugins without it, a dry run."""
    known = getattr(backbone, "tap_channels", None)
    if isinstance(known, dict) and tap in known:
        return int(known[tap])
    size = int(getattr(backbone, "divisor", 16))
    size = max(size, 8)
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        _, features = backbone(torch.zeros(1, in_channels, size, size, size))
    backbone.train(was_training)
    if tap not in features:
        raise KeyError(tap)
    return int(features[tap].shape[1])


def resolve_tap(backbone: nn.Module, tap: str) -> str:
    """The configured tap, or the backbone's ``deepest_tap`` when empty; checked against ``tap_names``."""
    from voxuda.errors import ConfigError

    name = tap or getattr(backbone, "deepest_tap", "")
    known = tuple(getattr(backbone, "tap_names", ())) + tuple(getattr(backbone, "tap_channels", {}) or ())
    if not name or (known and name not in known):
        raise ConfigError(
            f"method.tap: backbone {type(backbone).__name__} has no tap {name!r} (taps: {', '.join(known)})"
        )
    return name


class DANN(SegmentationMethod):
    """Source CE + Dice plus a domain-adversarial loss on ``config.tap`` through gradient reversal."""

    config: DANNConfig

    def __init__(self, config: DANNConfig) -> None:
        super().__init__(config)
        self.tap = resolve_tap(self.student, config.tap)
        channels = tap_channels(self.student, self.tap, config.in_channels)
        self.discriminator = DomainDiscriminator3D(
            channels, hidden=config.discriminator_hidden, mode=config.discriminator_mode
        )
        self.total_steps = 1

    def on_train_start(self, context: TrainContext) -> None:
        self.total_steps = max(int(context.total_steps), 1)

    def adversarial_lambda(self, step: int) -> float:
        cfg = self.config
        return dann_lambda(step / self.total_steps, cfg.adversarial_weight, cfg.schedule_gamma)

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        logits_s, feats_s = self.student(source.volume)
        _, feats_t = self.student(target.volume)
        seg, parts = self.seg_loss(logits_s, source.label)
        lambd = self.adversarial_lambda(step)
        adv, accuracy = domain_adversarial_loss(
            self.discriminator, feats_s[self.tap], feats_t[self.tap], lambd
        )
        return StepOutput(
            loss=seg + adv,
            losses={"seg": float(seg.detach()), **parts, "domain": float(adv.detach())},
            metrics={"grl_lambda": lambd, "domain_accuracy": accuracy},
        )

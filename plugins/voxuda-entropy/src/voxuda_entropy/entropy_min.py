"""Entropy minimisation (MinEnt, Vu et al. 2019) for 3D segmentation.

Loss: the supervised source CE + Dice plus ``entropy_weight * ramp(step)`` times the mean normalised entropy
of the target predictions. Confident target predictions are the cluster assumption at voxel level: decision
boundaries should not cross dense regions of target data.
"""

from __future__ import annotations

import attrs

from voxuda.plugin_api import (
    BaseMethodConfig,
    SegmentationMethod,
    SourceBatch,
    StepOutput,
    TargetBatch,
    help_field,
    non_negative,
)
from voxuda_entropy.entropy import linear_ramp, mean_entropy


@attrs.define
class EntropyMinConfig(BaseMethodConfig):
    """Configuration of :class:`EntropyMin`."""

    entropy_weight: float = help_field(
        1.0, help="weight of the mean normalised target entropy (in [0, 1])", validator=non_negative
    )
    ramp_steps: int = help_field(
        0, help="steps over which the entropy weight ramps linearly from 0 (0: full weight at once)",
        validator=non_negative,
    )


class EntropyMin(SegmentationMethod):
    """Source segmentation loss + entropy minimisation on target volumes."""

    config: EntropyMinConfig

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        logits_s, _ = self.student(source.volume)
        logits_t, _ = self.student(target.volume)
        seg, parts = self.seg_loss(logits_s, source.label)
        entropy = mean_entropy(logits_t)
        weight = self.config.entropy_weight * linear_ramp(step, self.config.ramp_steps)
        return StepOutput(
            loss=seg + weight * entropy,
            losses={"seg": float(seg.detach()), **parts, "entropy": float(entropy.detach())},
            metrics={"entropy_weight": weight},
        )

"""Source-only training: supervised CE + Dice on labelled source; the target is ignored (the lower bound)."""

from __future__ import annotations

import attrs

from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch
from voxuda.methods.segmentation import BaseMethodConfig, SegmentationMethod


@attrs.define
class SourceOnlyConfig(BaseMethodConfig):
    """Configuration of :class:`SourceOnly` (only the shared fields)."""


class SourceOnly(SegmentationMethod):
    """Train the backbone on source labels only."""

    sees_target = False

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        logits, _ = self.student(source.volume)
        loss, parts = self.seg_loss(logits, source.label)
        return StepOutput(loss=loss, losses={"seg": float(loss.detach()), **parts})

"""The oracle: supervised on *target* labels. An upper bound for comparison, never a UDA result.

It is the only built-in method with ``uses_target_labels = True``; the trainer passes target labels to it and
flags it ("upper bound") in every output.
"""

from __future__ import annotations

import attrs

from voxuda.config import help_field
from voxuda.errors import ConfigError
from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch
from voxuda.methods.segmentation import BaseMethodConfig, SegmentationMethod


@attrs.define
class OracleConfig(BaseMethodConfig):
    """Configuration of :class:`Oracle`."""

    source_weight: float = help_field(
        0.0, help="weight of the source supervised loss added to the target one (0: target labels only)"
    )


class Oracle(SegmentationMethod):
    """Train on labelled target volumes (optionally plus source)."""

    config: OracleConfig
    uses_target_labels = True
    flag = "upper bound"

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        if target.label is None:
            raise ConfigError("the oracle needs target labels, but the target batch has none")
        logits, _ = self.student(target.volume)
        loss, parts = self.seg_loss(logits, target.label)
        losses = {"seg_target": float(loss.detach()), **{f"{k}_target": v for k, v in parts.items()}}
        if self.config.source_weight > 0:
            src_logits, _ = self.student(source.volume)
            src_loss, _ = self.seg_loss(src_logits, source.label)
            loss = loss + self.config.source_weight * src_loss
            losses["seg"] = float(src_loss.detach())
        return StepOutput(loss=loss, losses=losses)

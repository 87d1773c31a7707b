"""What every segmentation method shares: the base config (backbone ref, classes, seg-loss weights) and a
``Method`` subclass that builds the backbone through the registry and computes the supervised loss.

Sub-components are built through the registry (``self.build_sub(field)``, from the config field that declares
their kind) so a plugin backbone or denoiser is used the same way as a built-in one, and their provenance is
recorded in ``run.json`` through :meth:`components`.
"""

from __future__ import annotations

from typing import Any

import attrs
from torch import Tensor, nn

from voxuda.backbones.blocks import LogitsOnly
from voxuda.checks import at_least_one, non_negative
from voxuda.config import ComponentRef, help_field, ref_field
from voxuda.methods.base import Method
from voxuda.methods.losses import segmentation_loss
from voxuda.protocols import Backbone3D


@attrs.define
class BaseMethodConfig:
    """Fields every method has. Method configs subclass this and add their own."""

    backbone: ComponentRef = ref_field(
        "unet3d", kind="backbone", help="segmentation network (a registered backbone)")
    in_channels: int = help_field(1, help="input channels", validator=at_least_one)
    num_classes: int = help_field(2, help="classes (2: background and macromolecule)", validator=at_least_one)
    ce_weight: float = help_field(1.0, help="weight of cross-entropy in the supervised loss",
                                  validator=non_negative)
    dice_weight: float = help_field(1.0, help="weight of soft Dice in the supervised loss",
                                    validator=non_negative)


def backbone_params(config: BaseMethodConfig) -> dict[str, Any]:
    """What a method adds to its backbone's configured parameters: its channel and class counts."""
    return {"in_channels": config.in_channels, "num_classes": config.num_classes}


def build_backbone(config: BaseMethodConfig) -> Backbone3D:
    """Build ``config.backbone`` through the registry with the method's channel and class counts (without a
    method around it: the config check sizes it on the meta device)."""
    from voxuda.api import build_component

    return build_component("backbone", config.backbone, **backbone_params(config))


class SegmentationMethod(Method):
    """A method with one student backbone and the supervised CE + Dice loss."""

    config: BaseMethodConfig

    def __init__(self, config: BaseMethodConfig) -> None:
        super().__init__(config)
        self.student = self.build_sub("backbone", **backbone_params(config))

    def seg_loss(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        return segmentation_loss(
            logits, labels, ce_weight=self.config.ce_weight, dice_weight=self.config.dice_weight
        )

    def predictor(self) -> nn.Module:
        return LogitsOnly(self.networks()[self.reported_network])

    def networks(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    @property
    def reported_network(self) -> str:
        return "student"

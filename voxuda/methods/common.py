"""What every segmentation method shares: the base config (backbone ref, classes, seg-loss weights) and a
``Method`` subclass that builds the backbone through the registry and computes the supervised loss.

Sub-components are built with ``build_component(kind, ref, ...)`` so a plugin backbone or denoiser is used the
same way as a built-in one, and their provenance is recorded in ``run.json`` through :meth:`components`.
"""

from __future__ import annotations

from typing import Any

import attrs
from torch import Tensor, nn

from voxuda.backbones.common import LogitsOnly
from voxuda.checks import at_least_one, non_negative
from voxuda.config import ComponentRef, help_field, ref_field
from voxuda.errors import PluginError
from voxuda.methods.base import Method
from voxuda.methods.losses import segmentation_loss


@attrs.define
class BaseMethodConfig:
    """Fields every method has. Method configs subclass this and add their own."""

    backbone: ComponentRef = ref_field("unet3d", help="segmentation network (a registered backbone)")
    in_channels: int = help_field(1, help="input channels", validator=at_least_one)
    num_classes: int = help_field(2, help="classes (2: background and macromolecule)", validator=at_least_one)
    ce_weight: float = help_field(1.0, help="weight of cross-entropy in the supervised loss",
                                  validator=non_negative)
    dice_weight: float = help_field(1.0, help="weight of soft Dice in the supervised loss",
                                    validator=non_negative)


def component_record(kind: str, ref: ComponentRef) -> dict[str, Any]:
    """Provenance plus the resolved config of a sub-component, for ``run.json``."""
    from voxuda.api import resolved_config
    from voxuda.registry import resolve

    spec = resolve(kind, ref.name)
    try:
        config = resolved_config(kind, ref)
    except PluginError:  # e.g. the identity denoiser fallback while its module is absent
        config = ref.to_dict()
    return {**spec.provenance(), "config": config}


def build_backbone(config: BaseMethodConfig) -> nn.Module:
    """Build ``config.backbone`` through the registry with the method's channel and class counts."""
    from voxuda.api import build_component

    return build_component(
        "backbone", config.backbone, in_channels=config.in_channels, num_classes=config.num_classes
    )


class SegmentationMethod(Method):
    """A method with one student backbone and the supervised CE + Dice loss."""

    config: BaseMethodConfig

    def __init__(self, config: BaseMethodConfig) -> None:
        super().__init__(config)
        self.student = build_backbone(config)
        backbone_ref = config.backbone.with_params(
            in_channels=config.in_channels, num_classes=config.num_classes
        )
        self._records: dict[str, tuple[str, ComponentRef]] = {"backbone": ("backbone", backbone_ref)}
        self._built: dict[str, Any] = {}

    def seg_loss(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        return segmentation_loss(
            logits, labels, ce_weight=self.config.ce_weight, dice_weight=self.config.dice_weight
        )

    def record_component(self, key: str, kind: str, ref: ComponentRef, built: Any = None) -> None:
        """Remember a sub-component built from the registry so that :meth:`components` reports it; pass the
        ``built`` object too so that :meth:`op_backends` can read the op backend it resolved."""
        self._records[key] = (kind, ref)
        if built is not None:
            self._built[key] = built

    def predictor(self) -> nn.Module:
        return LogitsOnly(self.networks()[self.reported_network])

    def networks(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    @property
    def reported_network(self) -> str:
        return "student"

    def components(self) -> dict[str, Any]:
        return {key: component_record(kind, ref) for key, (kind, ref) in self._records.items()}

    def op_backends(self) -> dict[str, str]:
        found = {key: getattr(built, "op_backend", None) for key, built in self._built.items()}
        return {key: name for key, name in found.items() if name is not None}


def build_denoiser(ref: ComponentRef) -> Any:
    """Build a registered denoiser (a callable on ``(N, C, D, H, W)`` tensors).

    While ``voxuda.denoisers`` is not installed in this build, the default ``identity`` falls back to
    ``nn.Identity`` so that methods with an optional denoiser still work; any other name is an error.
    """
    from voxuda.api import build_component

    try:
        return build_component("denoiser", ref)
    except (ModuleNotFoundError, PluginError) as exc:
        if ref.name == "identity" and missing_builtin_denoisers(exc):
            return nn.Identity()
        raise


def missing_builtin_denoisers(exc: BaseException) -> bool:
    """True if ``exc`` was caused by the built-in ``voxuda.denoisers`` modules not being importable."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ModuleNotFoundError) and (cause.name or "").startswith("voxuda.denoisers"):
            return True
        cause = cause.__cause__
    return False

"""Model-selection validators: ``score(predictor, context) -> float``, higher is better.

UDA has no labelled target data, so choosing a checkpoint is itself a method decision that must be explicit.
Label-free criteria (``entropy``, ``agreement``) and held-out source Dice (``source_val``) are honest;
``target_oracle`` uses target labels and is marked ``label_leak = True`` so that every output flags it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import attrs
import torch
from torch import Tensor, nn

from voxuda.config import ComponentRef, help_field, ref_field
from voxuda.engine.data import DomainSplit, RunData
from voxuda.engine.inference import InputTransform, iter_probabilities, predict_labels
from voxuda.engine.metrics import SegmentationMeter
from voxuda.errors import ConfigError


@attrs.define
class ValidationContext:
    """What a validator may use: the run's data, device, batch size and the test-time input transform."""

    data: RunData
    num_classes: int
    device: torch.device = torch.device("cpu")
    batch_size: int = 8
    input_transform: InputTransform | None = None


class Validator:
    """Base class: subclasses implement :meth:`score`."""

    #: True when the criterion reads target labels (reported as a leak in run.json and results).
    label_leak: ClassVar[bool] = False
    flag: ClassVar[str] = ""

    def __init__(self, config: Any) -> None:
        self.config = config

    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        raise NotImplementedError


def _limit(split: DomainSplit, max_volumes: int) -> DomainSplit:
    if max_volumes and len(split) > max_volumes:
        return split.take(torch.arange(max_volumes))
    return split


def _dice(predictor: nn.Module, split: DomainSplit, context: ValidationContext) -> float:
    assert split.labels is not None
    pred = predict_labels(
        predictor, split.volumes, batch_size=context.batch_size, device=context.device,
        input_transform=context.input_transform,
    )
    meter = SegmentationMeter(context.num_classes)
    meter.update(pred, split.labels)
    return float(meter.result()["overall"]["dice_fg"])


@attrs.define
class SourceValidationConfig:
    """Configuration of :class:`SourceValidation`."""

    max_volumes: int = help_field(0, help="use at most this many held-out source volumes (0 = all)")


class SourceValidation(Validator):
    """Foreground Dice on the held-out labelled source split (``data.val_split`` of the source domain)."""

    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        split = context.data.source_val
        if split is None or split.labels is None:
            raise ConfigError(
                "evaluation.selection = 'source_val' needs a labelled source split data.val_split"
            )
        return _dice(predictor, _limit(split, self.config.max_volumes), context)


@attrs.define
class PredictionEntropyConfig:
    """Configuration of :class:`PredictionEntropy`."""

    max_volumes: int = help_field(64, help="target-train volumes scored (0 = all)")


def mean_entropy(probs: Tensor) -> Tensor:
    """Per-voxel Shannon entropy (nats) of ``(N, K, ...)`` probabilities, averaged over everything."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=1).mean()


class PredictionEntropy(Validator):
    """Negative mean prediction entropy on target-train volumes (label-free; confident models win)."""

    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        split = _limit(context.data.target_train, self.config.max_volumes)
        total, count = 0.0, 0
        for _, probs in iter_probabilities(
            predictor, split.volumes, batch_size=context.batch_size, device=context.device,
            input_transform=context.input_transform,
        ):
            total += float(mean_entropy(probs)) * probs.shape[0]
            count += probs.shape[0]
        return -total / max(count, 1)


@attrs.define
class TeacherStudentAgreementConfig:
    """Configuration of :class:`TeacherStudentAgreement`."""

    denoiser: ComponentRef = ref_field("gaussian", help="denoiser giving the second view of the target")
    metric: Literal["dice", "accuracy"] = help_field(
        "dice", help="dice: foreground Dice between the two predictions; accuracy: voxel agreement"
    )
    max_volumes: int = help_field(64, help="target-train volumes scored (0 = all)")


class TeacherStudentAgreement(Validator):
    """Agreement between predictions on raw and on denoised target input (label-free stability)."""

    def __init__(self, config: TeacherStudentAgreementConfig) -> None:
        super().__init__(config)
        from voxuda.api import build_component

        self.denoiser = build_component("denoiser", config.denoiser)

    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        split = _limit(context.data.target_train, self.config.max_volumes)
        base = context.input_transform

        def denoised(x: Tensor) -> Tensor:
            return self.denoiser(base(x) if base is not None else x)

        common = {"batch_size": context.batch_size, "device": context.device}
        raw = predict_labels(predictor, split.volumes, input_transform=base, **common)
        smooth = predict_labels(predictor, split.volumes, input_transform=denoised, **common)
        if self.config.metric == "accuracy":
            return float((raw == smooth).double().mean())
        meter = SegmentationMeter(context.num_classes)
        meter.update(raw, smooth)
        return float(meter.result()["overall"]["dice_fg"])


@attrs.define
class TargetOracleConfig:
    """Configuration of :class:`TargetOracle`."""

    max_volumes: int = help_field(0, help="labelled target volumes scored (0 = all)")


class TargetOracle(Validator):
    """Foreground Dice on labelled target volumes (``data.val_split``, else target-train): a LABEL LEAK."""

    label_leak = True
    flag = "label leak: checkpoint selected on target labels"

    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        split = context.data.target_val
        if split is None or split.labels is None:
            split = context.data.target_train
        if split.labels is None:
            raise ConfigError("evaluation.selection = 'target_oracle' needs labelled target volumes")
        return _dice(predictor, _limit(split, self.config.max_volumes), context)


def build_validator(ref: ComponentRef) -> Validator:
    from voxuda.api import build_component

    return build_component("validator", ref)


def is_label_leak(validator: object) -> bool:
    return bool(getattr(validator, "label_leak", False))


__all__ = [
    "ValidationContext",
    "Validator",
    "SourceValidation",
    "PredictionEntropy",
    "TeacherStudentAgreement",
    "TargetOracle",
    "build_validator",
    "RunData",
]

"""Model-selection validators: ``score(predictor, context) -> float``, higher is better.

UDA has no labelled target data, so choosing a checkpoint is itself a method decision that must be explicit.
Held-out source Dice (``source_val``) is honest but blind to the target: in the appearance probe it stayed at
0.741-0.749 for every warm-started adaptation run while their target Dice ranged from 0.19 to 0.38.
``noisy_source_val`` scores the held-out source after a noise model fitted on unlabelled target volumes has
given it the target's look (a labelled proxy of the target). The label-free criteria that look at the target
read only the *volumes* of the target train split, never a label:
``entropy`` (mean prediction entropy), ``agreement`` (raw vs denoised input), ``target_prior`` (predicted
foreground fraction against the source's), ``target_agreement`` (prediction vs prediction of a
wedge-preserving flipped view, or of a denoised view) and ``target_combined`` (a fixed-scale weighted sum).
``target_oracle`` uses target labels and is marked ``label_leak = True`` so that every output flags it.

Scores are compared one checkpoint at a time (the trainer keeps ``best.pt`` when a score beats the best so
far), so every score has a fixed scale; a rank or z normalisation across checkpoints would need all
candidates at once and is left to post-hoc analysis.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import attrs
import torch
from torch import Tensor, nn

from voxuda.checks import at_least_one, non_negative, valid_prior_range
from voxuda.components import SubComponents
from voxuda.config import ComponentRef, help_field, ref_field
from voxuda.engine.data import DomainSplit, RunData
from voxuda.engine.decision import source_fraction_prior
from voxuda.engine.inference import InputTransform, iter_probabilities, predict_labels
from voxuda.engine.metrics import SegmentationMeter
from voxuda.errors import ConfigError
from voxuda.methods.pseudo_labels import foreground_fraction
from voxuda.protocols import MeasuresSource


@attrs.define
class ValidationContext:
    """What a validator may use: the run's data, device, batch size and the test-time input transform."""

    data: RunData
    num_classes: int
    device: torch.device = torch.device("cpu")
    batch_size: int = 8
    input_transform: InputTransform | None = None


class Validator(SubComponents):
    """Base class: subclasses implement :meth:`score`.

    Components their config names are built with ``self.build_sub(field)``, which records them for
    ``run.json`` (:class:`~voxuda.components.SubComponents`).
    """

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


def target_volumes(context: ValidationContext, max_volumes: int) -> Tensor:
    """The first ``max_volumes`` (0 = all) target-train *volumes*; the split's labels are never touched."""
    volumes = context.data.target_train.volumes
    return volumes[:max_volumes] if max_volumes else volumes


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
class NoisySourceValidationConfig:
    """Configuration of :class:`NoisySourceValidation`."""

    noise: ComponentRef = ref_field(
        "skew_matched", kind="noise_model", colour="target",
        help="label-free noise model that gives the held-out source the target's look; fitted on the run's "
        "unlabelled target-train volumes [I: the appearance track's measured match, docs/vox_uda.md]")
    max_volumes: int = help_field(0, help="held-out source volumes scored (0 = all)", validator=non_negative)
    fit_volumes: int = help_field(
        0, help="target-train (and source-train) volumes the noise model is fitted on (0 = all)",
        validator=non_negative)
    seed: int = help_field(0, help="seed of the one noise draw per volume (the same for every checkpoint)")


class NoisySourceValidation(Validator):
    """Foreground Dice on the held-out labelled source split after a label-free noise model has given it the
    target's look: a labelled proxy of the target.

    Why: ``source_val`` is blind to the target (flat across adaptation checkpoints in the appearance probe),
    and the target-looking criteria score agreement or calibration, not correctness. A noise model fitted on
    unlabelled target volumes (``skew_matched`` matches the target's voxel skewness, and with ``colour =
    "target"`` its spectrum) turns held-out source volumes, whose labels are known, into volumes that look
    like the target where the appearance track's shift is (noise level and colour); Dice on them reads no
    target label. It is what a run whose method supervises on the same noise already optimises, measured on
    volumes it never trained on. It assumes the domains share content, as the noise model does.

    The noise model is fitted once per validator and the noisy volumes drawn once from ``seed``, so every
    checkpoint is scored on the same volumes.
    """

    def __init__(self, config: NoisySourceValidationConfig) -> None:
        super().__init__(config)
        self.noise = self.build_sub("noise")
        self._noisy: tuple[RunData, DomainSplit] | None = None  # the data it was built from, and the split

    def noisy_split(self, context: ValidationContext) -> DomainSplit:
        """The held-out source volumes with the fitted noise added (labels unchanged), built on first use for
        the context's data."""
        if self._noisy is not None and self._noisy[0] is context.data:
            return self._noisy[1]
        split = context.data.source_val
        if split is None or split.labels is None:
            raise ConfigError("evaluation.selection = 'noisy_source_val' needs a labelled source split "
                              "data.val_split")
        split = _limit(split, self.config.max_volumes)
        fit = self.config.fit_volumes
        if self.noise.needs_target:
            target = context.data.target_train.volumes
            self.noise.fit(target[:fit] if fit else target)
        if isinstance(self.noise, MeasuresSource):
            source = context.data.source_train.volumes
            self.noise.measure_source(source[:fit] if fit else source)
        generator = torch.Generator().manual_seed(self.config.seed)
        noisy = torch.cat([self.noise(split.volumes[i:i + 1], generator) for i in range(len(split))])
        noisy_split = DomainSplit(noisy, split.labels, split.meta, split.index)
        self._noisy = (context.data, noisy_split)
        return noisy_split

    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        return _dice(predictor, self.noisy_split(context), context)


@attrs.define
class PredictionEntropyConfig:
    """Configuration of :class:`PredictionEntropy`."""

    max_volumes: int = help_field(64, help="target-train volumes scored (0 = all)")


def mean_entropy(probs: Tensor) -> Tensor:
    """Per-voxel Shannon entropy (nats) of ``(N, K, ...)`` probabilities, averaged over everything."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=1).mean()


class PredictionEntropy(Validator):
    """Negative mean prediction entropy on target-train volumes (label-free; confident models win)."""

    @torch.no_grad()
    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        return -predict_target(predictor, target_volumes(context, self.config.max_volumes), context).entropy


@attrs.define
class DenoisedViewAgreementConfig:
    """Configuration of :class:`DenoisedViewAgreement`."""

    denoiser: ComponentRef = ref_field(
        "gaussian", kind="denoiser", help="denoiser giving the second view of the target")
    metric: Literal["dice", "accuracy"] = help_field(
        "dice", help="dice: foreground Dice between the two predictions; accuracy: voxel agreement"
    )
    max_volumes: int = help_field(64, help="target-train volumes scored (0 = all)")


class DenoisedViewAgreement(Validator):
    """Agreement between predictions on raw and on denoised target input (label-free stability)."""

    def __init__(self, config: DenoisedViewAgreementConfig) -> None:
        super().__init__(config)
        self.denoiser = self.build_sub("denoiser")

    @torch.no_grad()
    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        volumes = target_volumes(context, self.config.max_volumes)
        raw = predict_target(predictor, volumes, context).labels
        return view_agreement(predictor, volumes, raw, context, self.denoiser, self.config.metric)


# -- label-free validators that look at the target --------------------------------------------------------
@attrs.frozen
class TargetPredictions:
    """Argmax labels ``(N, D, H, W)`` of target volumes and the mean per-voxel entropy (nats)."""

    labels: Tensor
    entropy: float

    @property
    def foreground_fraction(self) -> float:
        return foreground_fraction(self.labels)


def predict_target(
    predictor: nn.Module, volumes: Tensor, context: ValidationContext,
    view: InputTransform | None = None,
) -> TargetPredictions:
    """One pass over ``volumes`` (after the run's test-time input transform, then ``view``)."""
    base = context.input_transform

    def transform(x: Tensor) -> Tensor:
        x = base(x) if base is not None else x
        return view(x) if view is not None else x

    labels, entropy, count = [], 0.0, 0
    for _, probs in iter_probabilities(predictor, volumes, batch_size=context.batch_size,
                                       device=context.device, input_transform=transform):
        labels.append(probs.argmax(dim=1))
        entropy += float(mean_entropy(probs)) * probs.shape[0]
        count += probs.shape[0]
    empty = torch.empty(0, *volumes.shape[2:], dtype=torch.long)
    return TargetPredictions(torch.cat(labels) if labels else empty, entropy / max(count, 1))


def flip_all(x: Tensor) -> Tensor:
    """Point inversion of the last three axes: it maps every frequency k to -k, and a missing wedge (like
    any real volume's Fourier support) is symmetric under that, so the view keeps the wedge where it was."""
    return torch.flip(x, dims=(-3, -2, -1))


def label_agreement(a: Tensor, b: Tensor, num_classes: int, metric: str = "dice") -> float:
    """Foreground Dice between two label maps (1 when both are empty), or the voxel accuracy."""
    if metric == "accuracy":
        return float((a == b).double().mean())
    meter = SegmentationMeter(num_classes)
    meter.update(a, b)
    return float(meter.result()["overall"]["dice_fg"])


def view_agreement(
    predictor: nn.Module, volumes: Tensor, raw: Tensor, context: ValidationContext,
    denoiser: Any | None, metric: str = "dice",
) -> float:
    """Agreement of ``raw`` predictions with those of a second view: ``denoiser(x)`` when given, else the
    flipped volume (predictions flipped back)."""
    if denoiser is not None:
        other = predict_target(predictor, volumes, context, view=denoiser).labels
    else:
        other = flip_all(predict_target(predictor, volumes, context, view=flip_all).labels)
    return label_agreement(raw, other, context.num_classes, metric)


def source_prior_range(
    fg_prior: tuple[float, ...], context: ValidationContext, name: str, tolerance: float = 1.0
) -> tuple[float, float]:
    """``[lo / tolerance, hi * tolerance]``, with ``[lo, hi]`` as configured, else the labelled source train
    split's foreground fraction twice (source labels are the supervision every method has; no target label
    is read)."""
    lo, hi = _configured_or_source_prior(fg_prior, context, name)
    return lo / tolerance, hi * tolerance


def _configured_or_source_prior(
    fg_prior: tuple[float, ...], context: ValidationContext, name: str
) -> tuple[float, float]:
    if fg_prior:
        return float(fg_prior[0]), float(fg_prior[1])
    return source_fraction_prior(context.data.source_train.labels, f"validator {name}",
                                 "set fg_prior = [lo, hi]")


def prior_score(fraction: float, lo: float, hi: float, floor: float) -> float:
    """``-|ln(f / nearest bound)|`` outside ``[lo, hi]`` and 0 inside; ``f`` is floored at ``floor`` (> 0) so
    that a predictor with no foreground gets a finite, very low score."""
    f = max(fraction, floor)
    if f > hi:
        return -math.log(f / hi)
    if f < lo:
        return -math.log(lo / f)
    return 0.0


def _prior_of_predictions(predictions: TargetPredictions, lo: float, hi: float) -> float:
    floor = 0.5 / max(predictions.labels.numel(), 1)  # half a voxel
    return prior_score(predictions.foreground_fraction, lo, hi, floor)


@attrs.define
class TargetPriorConfig:
    """Configuration of :class:`TargetPrior`."""

    fg_prior: tuple[float, ...] = help_field(
        (), help="[lo, hi] foreground fraction; [] = the source train split's (from its labels)",
        validator=valid_prior_range,
    )
    prior_tolerance: float = help_field(
        1.0, help="score 0 anywhere in [lo / t, hi * t]; 1 = exact [I]", validator=at_least_one)
    max_volumes: int = help_field(64, help="target-train volumes scored (0 = all)", validator=non_negative)


class TargetPrior(Validator):
    """Agreement of the predicted target foreground fraction with the source prior: ``-|ln(f / pi)|``.

    The appearance probe's failure mode is calibration: the source model predicted 4.3 % foreground on a
    target with 1.45 % (source 1.33 %). Its four measured checkpoints (continuation 3.6 %, Vox-UDA 4.1 %,
    parent 4.3 %, mean teacher 5.5 % predicted foreground) rank by this score exactly as by target Dice
    (0.375, 0.366, 0.354, 0.204). It says nothing about *where* the foreground is: a method that forces its
    predictions to the prior (``pseudo_label_selection = "prior"``) ties here, hence ``target_combined``.
    """

    @torch.no_grad()
    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        cfg = self.config
        lo, hi = source_prior_range(cfg.fg_prior, context, "target_prior", cfg.prior_tolerance)
        predictions = predict_target(predictor, target_volumes(context, cfg.max_volumes), context)
        return _prior_of_predictions(predictions, lo, hi)


@attrs.define
class TargetAgreementConfig:
    """Configuration of :class:`TargetAgreement`."""

    view: Literal["flip", "denoised"] = help_field(
        "flip", help="second view: flip (point inversion of the volume, wedge-preserving) or denoised")
    denoiser: ComponentRef = ref_field("gaussian", kind="denoiser", help="denoiser of the 'denoised' view")
    metric: Literal["dice", "accuracy"] = help_field(
        "dice", help="dice: foreground Dice between the two predictions; accuracy: voxel agreement")
    max_volumes: int = help_field(64, help="target-train volumes scored (0 = all)", validator=non_negative)


class TargetAgreement(Validator):
    """Stability of target predictions under a label-preserving change of the input (label-free)."""

    def __init__(self, config: TargetAgreementConfig) -> None:
        super().__init__(config)
        self.denoiser = self.build_sub("denoiser") if config.view == "denoised" else None

    @torch.no_grad()
    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        volumes = target_volumes(context, self.config.max_volumes)
        raw = predict_target(predictor, volumes, context).labels
        return view_agreement(predictor, volumes, raw, context, self.denoiser, self.config.metric)


@attrs.define
class TargetCombinedConfig:
    """Configuration of :class:`TargetCombined`."""

    prior_weight: float = help_field(1.0, help="weight of the target_prior score [I]", validator=non_negative)
    agreement_weight: float = help_field(
        1.0, help="weight of (target_agreement Dice - 1) [I]", validator=non_negative)
    entropy_weight: float = help_field(
        0.0, help="weight of -entropy / ln K; 0 [I]: low entropy also rewards predicting all background",
        validator=non_negative)
    fg_prior: tuple[float, ...] = help_field(
        (), help="[lo, hi] for the prior term; [] = the source train split's foreground fraction",
        validator=valid_prior_range)
    prior_tolerance: float = help_field(
        1.5, help="the prior term is 0 anywhere in [lo / t, hi * t]: agreement ranks checkpoints with a "
        "plausible foreground fraction, the prior penalises clear miscalibration only [R-own: toy regret]",
        validator=at_least_one)
    view: Literal["flip", "denoised"] = help_field("flip", help="second view of the agreement term")
    denoiser: ComponentRef = ref_field("gaussian", kind="denoiser", help="denoiser of the 'denoised' view")
    max_volumes: int = help_field(64, help="target-train volumes scored (0 = all)", validator=non_negative)


class TargetCombined(Validator):
    """``w_p * prior + w_a * (agreement - 1) + w_e * (-entropy / ln K)``: every term is 0 at its best and
    negative otherwise, on comparable scales (twice the prior costs 0.69; agreement 0.7 costs 0.3), so the sum
    can be compared across checkpoints one at a time.

    Why these terms: the prior catches miscalibration (the appearance probe's failure); agreement separates
    checkpoints that the prior ties (methods that select pseudo-labels by the prior all predict about pi);
    entropy is off by default because the most confident predictor is the one that collapsed to background,
    the direction self-training drifted in the adaptation review (finding 6).
    """

    def __init__(self, config: TargetCombinedConfig) -> None:
        super().__init__(config)
        self.denoiser = self.build_sub("denoiser") if config.view == "denoised" else None

    @torch.no_grad()
    def score(self, predictor: nn.Module, context: ValidationContext) -> float:
        cfg = self.config
        volumes = target_volumes(context, cfg.max_volumes)
        predictions = predict_target(predictor, volumes, context)
        total = 0.0
        if cfg.prior_weight > 0:
            lo, hi = source_prior_range(cfg.fg_prior, context, "target_combined", cfg.prior_tolerance)
            total += cfg.prior_weight * _prior_of_predictions(predictions, lo, hi)
        if cfg.agreement_weight > 0:
            agreement = view_agreement(predictor, volumes, predictions.labels, context, self.denoiser)
            total += cfg.agreement_weight * (agreement - 1.0)
        if cfg.entropy_weight > 0:
            total -= cfg.entropy_weight * predictions.entropy / math.log(max(context.num_classes, 2))
        return total


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
    "DenoisedViewAgreement",
    "TargetPrior",
    "TargetAgreement",
    "TargetCombined",
    "predict_target",
    "target_volumes",
    "TargetOracle",
    "NoisySourceValidation",
    "build_validator",
    "RunData",
]

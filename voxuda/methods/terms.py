"""Loss terms that adaptation methods are built from: self-training, adversarial alignment, consistency.

Why terms. Vox-UDA is a mean teacher plus a consistency and an adversarial term, and DANN is source training
plus that same adversarial term. Written as methods, Vox-UDA subclassed the mean teacher, rewrote its
step and called five of its helpers back and forth, and each adversarial method wired up the shared
discriminator (its run length, optimiser group and logging) on its own. A term owns what its loss needs
(networks, schedule, its optimiser group) and returns ``(loss, logs)``; a method's ``training_step`` runs the
forward passes its terms share and adds up the weighted losses, in one pass from top to bottom:

- :class:`SelfTrainingTerm`: the EMA teacher, its (denoised) input, pseudo-label selection, the student's
  augmented view and the EMA update (mean teacher, Vox-UDA's L_pseudo);
- :class:`AdversarialTerm`: the domain discriminator(s), the reversal-weight schedule and the discriminator's
  own learning-rate group (DANN, Vox-UDA's L_dis), on :class:`~voxuda.methods.discriminator.DomainAdversary`;
- :class:`ConsistencyTerm`: the per-tap feature distance between clean and noisy source (Vox-UDA's L_con).

Terms are plain objects, not ``nn.Module``s. The networks a term builds (teacher, discriminator, pseudo-label
selector) are registered on the method by :func:`attach` under the attribute names checkpoints have always
used (``teacher.*``, ``discriminator.*``, ``pseudo_selector.*``): registering the term itself would prefix
every key with the term's name, and no earlier checkpoint (a warm start's parent, a finished run to evaluate)
would load. Randomness stays with the method: a term that draws (the augmentation) is handed the run's
generator, so the order of draws in a step is visible in the method's ``training_step``.

Terms do not build what a method configures: the method builds its registered components (denoisers),
records their provenance, and hands them over with the pseudo-label selector of its config, so provenance
is recorded in one place, the method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import attrs
import torch
from torch import Tensor, nn

from voxuda.backbones.taps import resolve_taps
from voxuda.errors import ConfigError
from voxuda.methods.augment import Orientations, apply_batch, sample_batch_transforms
from voxuda.methods.base import StepOutput, TargetBatch, TrainContext, groups_with_scaled_module
from voxuda.methods.discriminator import AdversarySettings, DomainAdversary
from voxuda.methods.ema import effective_momentum, ema_update, make_ema_teacher, ramped_momentum
from voxuda.methods.losses import ConsistencyForm, class_index, feature_consistency
from voxuda.methods.pseudo_labels import PseudoLabels, PseudoLabelSelector, selection_metrics
from voxuda.methods.volume_cache import DenoisedVolumeCache, cacheable_denoiser, settings_key
from voxuda.protocols import Backbone3D


# -- what every term returns and how a method holds it ------------------------------------------------------
@attrs.define
class TermLogs:
    """Scalars to log, split as in :class:`~voxuda.methods.base.StepOutput`: ``losses`` and ``metrics``.

    A step starts one (with its supervised loss) and :meth:`add`-s each term's, in the order the terms ran,
    so the logged keys keep a fixed order.
    """

    losses: dict[str, float] = attrs.field(factory=dict)
    metrics: dict[str, float] = attrs.field(factory=dict)

    def add(self, other: TermLogs) -> TermLogs:
        """Merge ``other`` into these logs (later keys win) and return them."""
        self.losses.update(other.losses)
        self.metrics.update(other.metrics)
        return self

    def output(self, loss: Tensor) -> StepOutput:
        """The step's :class:`StepOutput`: ``loss`` to back-propagate with these logs."""
        return StepOutput(loss=loss, losses=self.losses, metrics=self.metrics)


_Component = TypeVar("_Component")


def frozen(component: _Component) -> _Component:
    """``component`` with its parameters' gradients off when it is an ``nn.Module``; returned for chaining.

    Denoisers and teachers are frozen when they are built, not filtered out later, so that a method's
    trainable parameters are simply those with ``requires_grad`` (the base class's rule) and no optimiser
    group can pick one of them up.
    """
    if isinstance(component, nn.Module):
        for parameter in component.parameters():
            parameter.requires_grad_(False)
    return component


class Term(Protocol):
    """What :func:`attach` needs from a term."""

    def checkpoint_modules(self) -> dict[str, Any]:
        """The term's stateful parts by the method attribute (and state-dict prefix) they are saved under."""
        ...


_T = TypeVar("_T", bound=Term)


def attach(method: nn.Module, term: _T) -> _T:
    """Register the ``nn.Module``s of ``term`` on ``method`` under their checkpoint names; return ``term``.

    Registration order is the term's (it fixes the order of ``method.parameters()``, hence of the optimiser's
    groups and of gradient-norm clipping). Parts that are not modules (a plain denoiser) have no state to save
    and no device to follow, and stay on the term only.
    """
    for name, part in term.checkpoint_modules().items():
        if isinstance(part, nn.Module):
            method.add_module(name, part)
    return term


# -- self-training ------------------------------------------------------------------------------------------
class SelfTrainingConfig(Protocol):
    """The config fields :class:`SelfTrainingTerm` reads (``MeanTeacherConfig``, hence ``VoxUDAConfig``).

    A protocol rather than the config class, so that the term does not import the methods built on it.
    """

    ema_momentum: float
    ema_half_life_fraction: float
    ema_ramp: bool
    pseudo_weight: float
    pseudo_rampup_steps: int
    warmup_steps: int
    augment: bool
    augment_orientations: Orientations
    teacher_input_cache_mb: int


@attrs.frozen
class PseudoTargets:
    """Teacher pseudo-labels carried onto the student's view: the ``view`` to feed the student, and the
    ``labels`` and ``mask`` moved by the same flips and turns, beside the ``selection`` they came from."""

    view: Tensor
    labels: Tensor
    mask: Tensor
    selection: PseudoLabels


class SelfTrainingTerm:
    """Mean-teacher self-training (Tarvainen and Valpola 2017): an EMA copy of the student labels the
    (denoised) target, ``selector`` keeps the voxels to learn, the student learns them on its view.

    Per step the method asks :meth:`weight` (0 during warm-up, then the ramped ``pseudo_weight``), and if it
    is positive, :meth:`targets` then :meth:`loss`; after the optimiser step, :meth:`update_teacher`.
    The teacher and ``teacher_denoiser`` are frozen here, at build time.
    """

    def __init__(self, config: SelfTrainingConfig, student: nn.Module, teacher_denoiser: Any,
                 selector: PseudoLabelSelector) -> None:
        self.config = config
        self.student = student
        self.teacher = make_ema_teacher(student)  # a frozen deep copy
        self.teacher.eval()
        self.teacher_denoiser = frozen(teacher_denoiser)
        self.teacher_input_cache = DenoisedVolumeCache(config.teacher_input_cache_mb * 2**20)
        self.selector = selector
        # the momentum in use: ema_momentum, or the one ema_half_life_fraction sets for the run's length
        self.ema_momentum = config.ema_momentum

    def checkpoint_modules(self) -> dict[str, Any]:
        return {"teacher": self.teacher, "teacher_denoiser": self.teacher_denoiser,
                "pseudo_selector": self.selector}

    def on_train_start(self, context: TrainContext) -> None:
        """Forget cached inputs of another run, measure the source prior, fix the EMA momentum for the run."""
        self.teacher_input_cache.clear()  # positions refer to this run's target split
        self.selector.on_train_start(context.extra)
        cfg = self.config
        self.ema_momentum = effective_momentum(cfg.ema_momentum, cfg.ema_half_life_fraction,
                                               context.total_steps)

    def weight(self, step: int) -> float:
        """0 during warm-up, then ``pseudo_weight`` times the optional Gaussian ramp-up."""
        cfg = self.config
        if step < cfg.warmup_steps:
            return 0.0
        if cfg.pseudo_rampup_steps <= 0:
            return cfg.pseudo_weight
        t = min((step - cfg.warmup_steps) / cfg.pseudo_rampup_steps, 1.0)
        return cfg.pseudo_weight * math.exp(-5.0 * (1.0 - t) ** 2)

    def teacher_input(self, volume: Tensor, index: Tensor | None = None) -> Tensor:
        """The teacher's view of a target batch: the (no-grad) denoised volume.

        With ``index`` (the volumes' positions in the target split, ``TargetBatch.index``) each volume is
        denoised once per run and then served from :attr:`teacher_input_cache` (bit-identical results).
        """
        with torch.no_grad():
            cache = self.teacher_input_cache
            if index is None or cache.budget_bytes <= 0 or not cacheable_denoiser(self.teacher_denoiser):
                return self.teacher_denoiser(volume)
            return cache.lookup(volume, index, self.teacher_denoiser, settings_key(self.teacher_denoiser))

    @torch.no_grad()
    def make_pseudo_labels(self, teacher_input: Tensor) -> PseudoLabels:
        """Run the teacher (eval mode: the trainer's ``method.train()`` reaches it too) and select."""
        self.teacher.eval()
        logits, _ = self.teacher(teacher_input)
        return self.selector.select(logits.float().softmax(dim=1))

    def augmented_target(self, volume: Tensor, pseudo: PseudoLabels,
                         generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """The student's target view, and the pseudo-labels and mask moved by the same transforms (drawn
        from ``generator`` when ``augment`` is on; nothing is drawn otherwise)."""
        if not self.config.augment:
            return volume, pseudo.labels, pseudo.mask
        transforms = sample_batch_transforms(volume.shape[0], volume.shape[-3:], generator,
                                             self.config.augment_orientations)
        return (
            apply_batch(volume, transforms),
            apply_batch(pseudo.labels, transforms),
            apply_batch(pseudo.mask, transforms),
        )

    def targets(self, target: TargetBatch, generator: torch.Generator,
                student_input: Callable[[Tensor], Tensor] | None = None) -> PseudoTargets:
        """Label ``target`` with the teacher, then build the student's view: ``student_input(volume)`` (the
        raw volume when None), augmented with the labels following it."""
        selection = self.make_pseudo_labels(self.teacher_input(target.volume, target.index))
        view = target.volume if student_input is None else student_input(target.volume)
        view, labels, mask = self.augmented_target(view, selection, generator)
        return PseudoTargets(view=view, labels=labels, mask=mask, selection=selection)

    def loss(self, student_logits: Tensor, targets: PseudoTargets) -> tuple[Tensor, TermLogs]:
        """L_pseudo on the student's logits of ``targets.view``: the selector's ``pseudo_loss`` on the kept
        voxels, plus the size penalty when ``size_prior_weight > 0``; logs the selection metrics and the
        student's foreground."""
        loss, parts = self.selector.label_loss(student_logits, targets.labels, targets.mask)
        logs = TermLogs(losses={"pseudo": float(loss.detach()), **parts},
                        metrics=selection_metrics(targets.selection))
        size = self.selector.size_loss(student_logits)
        if size is not None:
            loss = loss + size
            logs.losses["size_prior"] = float(size.detach())
        with torch.no_grad():
            logs.metrics["student_fg_fraction"] = float((class_index(student_logits) > 0).float().mean())
        return loss, logs

    def update_teacher(self, step: int) -> None:
        """After the optimiser step: the teacher moves towards the student by EMA (ramped if configured)."""
        momentum = self.ema_momentum
        if self.config.ema_ramp:
            momentum = ramped_momentum(momentum, step)
        ema_update(self.teacher, self.student, momentum)


# -- adversarial alignment ----------------------------------------------------------------------------------
class AdversarialTerm:
    """Domain-adversarial alignment, one implementation for DANN and Vox-UDA's L_dis.

    The discriminator heads, where they look, the warm-up and reversal-weight schedule and the adversarial
    form are :class:`~voxuda.methods.discriminator.DomainAdversary`, configured by one
    :class:`~voxuda.methods.discriminator.AdversarySettings`. The methods keep their own config keys (DANN:
    ``tap``, ``adversarial_weight``, ``schedule_gamma``; Vox-UDA: ``discriminator_tap``, ``grl_lambda``,
    ``grl_schedule``), which configs, suites and docs use, and map them onto those settings; ``loss_key``
    keeps each method's logged name for the loss (``domain``, ``dis``).
    """

    def __init__(self, settings: AdversarySettings, backbone: Backbone3D, num_classes: int,
                 loss_key: str) -> None:
        self.discriminator = DomainAdversary(backbone, settings, num_classes)
        self.loss_key = loss_key

    def checkpoint_modules(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator}

    @property
    def settings(self) -> AdversarySettings:
        return self.discriminator.settings

    @property
    def tap(self) -> str:
        """The first backbone tap the discriminator reads ('' for the output-space discriminator)."""
        return next(iter(self.discriminator.taps), "")

    def on_train_start(self, context: TrainContext) -> None:
        """The schedule's progress is measured against the run's length."""
        self.discriminator.total_steps = max(int(context.total_steps), 1)

    def weight(self, step: int) -> float:
        """The adversarial (reversal or confusion) weight at ``step``: 0 in warm-up, then the schedule."""
        return self.discriminator.weight(step)

    def optimizer_groups(self, trainable: Iterable[nn.Parameter]) -> list[dict[str, Any]]:
        """``trainable`` split into the rest (the trainer's rate, first) and the discriminator's group at
        ``lr_scale`` times it: the discriminator starts from scratch beside a warm-started backbone."""
        return groups_with_scaled_module(trainable, self.discriminator, self.settings.lr_scale)

    def __call__(self, source_logits: Tensor, source_features: dict[str, Tensor], target_logits: Tensor,
                 target_features: dict[str, Tensor], step: int) -> tuple[Tensor, TermLogs]:
        """The adversarial loss of one step, logged under ``loss_key`` with the discriminator's metrics."""
        adversary = self.discriminator(source_logits, source_features, target_logits, target_features, step)
        logs = TermLogs(losses={self.loss_key: float(adversary.loss.detach())}, metrics=adversary.metrics())
        return adversary.loss, logs


# -- feature consistency ------------------------------------------------------------------------------------
class ConsistencyTerm:
    """Vox-UDA's L_con: ``sum_tap weight * feature_consistency(clean[tap], noisy[tap])`` between the
    student's features of the clean and the noised source (:func:`voxuda.methods.losses.feature_consistency`).

    ``detach_clean`` stops gradients through the clean branch, making it a fixed target.
    """

    def __init__(self, taps: tuple[str, ...], weights: tuple[float, ...], form: ConsistencyForm,
                 detach_clean: bool = False) -> None:
        if len(weights) != len(taps):
            raise ConfigError(f"method.tap_weights: {len(weights)} weights for {len(taps)} taps "
                              f"{taps}; give one weight per tap")
        self.taps = tuple(taps)
        self.weights = tuple(float(w) for w in weights)
        self.form = form
        self.detach_clean = detach_clean

    @classmethod
    def on_backbone(cls, backbone: Backbone3D, taps: Iterable[str], weights: Iterable[float],
                    form: ConsistencyForm, detach_clean: bool = False) -> ConsistencyTerm:
        """The term on ``backbone``'s taps: the configured ones (checked), or its ``tap_names`` if none."""
        return cls(resolve_taps(backbone, tuple(taps), "method.taps"), tuple(weights), form, detach_clean)

    def checkpoint_modules(self) -> dict[str, Any]:
        return {}

    def __call__(self, clean: dict[str, Tensor], noisy: dict[str, Tensor]) -> tuple[Tensor, TermLogs]:
        """The weighted sum over taps, logged as ``con`` with each tap's unweighted ``con_<tap>``."""
        total = torch.zeros((), device=next(iter(clean.values())).device)
        parts: dict[str, float] = {}
        for tap, weight in zip(self.taps, self.weights):
            reference = clean[tap].detach() if self.detach_clean else clean[tap]
            value = feature_consistency(reference, noisy[tap], self.form)
            parts[f"con_{tap}"] = float(value.detach())
            total = total + weight * value
        return total, TermLogs(losses={"con": float(total.detach()), **parts})


__all__ = ["AdversarialTerm", "ConsistencyTerm", "PseudoTargets", "SelfTrainingConfig", "SelfTrainingTerm",
           "Term", "TermLogs", "attach", "frozen"]

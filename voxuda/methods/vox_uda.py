"""Vox-UDA (Li et al., AAAI 2025) composed from registered parts: mean teacher + NGM + denoised teacher input
+ feature consistency + gradient-reversal discriminator.

One training step (docs/vox_uda.md has the full table of options and where each default comes from):

1. ``noisy = noise(source)``: the noise model (NGM by default, fitted on N target volumes in
   :meth:`on_train_start`) adds target-like noise to the clean source.
2. The student sees the clean source, the noisy source and the raw target (optionally through
   ``student_input_denoiser``); features are read at the backbone's named taps.
3. The EMA teacher sees ``teacher_denoiser(target)`` (the improved bilateral filter by default) and gives
   pseudo-labels chosen by ``pseudo_label_selection`` (default: argmax where the confidence reaches
   ``confidence_threshold``; see :mod:`voxuda.methods.pseudo_labels`).
4. ``L = w_seg L_seg + w_con L_con + w_dis L_dis + w_pseudo(step) L_pseudo`` (plus, off by default and
   not in the paper, ``w_seg_noisy`` times L_seg on the noisy source, whose labels are the clean source's).
5. After the optimiser step the teacher follows the student by EMA (inherited from the mean teacher).

The mean-teacher pieces (teacher, pseudo-labels, EMA, warm-up and ramp-up of the pseudo weight) are reused
from :mod:`voxuda.methods.mean_teacher` by subclassing its config and method; only the extra terms live here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxuda.checks import non_negative, unit_interval
from voxuda.config import ComponentRef, help_field, ref_field
from voxuda.errors import ConfigError
from voxuda.methods.base import SourceBatch, StepOutput, TargetBatch, TrainContext, groups_with_scaled_module
from voxuda.methods.common import build_denoiser
from voxuda.methods.discriminator import (
    AdversarialForm,
    AdversarySettings,
    DiscriminatorInput,
    DiscriminatorMode,
    DomainAdversary,
    OutputMap,
    form_field,
    hidden_field,
    input_field,
    lr_scale_field,
    output_map_field,
    standardize_field,
    taps_field,
    warmup_field,
)
from voxuda.methods.mean_teacher import MeanTeacher, MeanTeacherConfig

ConsistencyForm = Literal["cosine", "cosine_flat", "mse"]


def _non_negative_all(instance: object, attribute: attrs.Attribute, value: Sequence[float]) -> None:
    if any(v < 0 for v in value):
        raise ValueError(f"{attribute.name} must not contain negative weights, got {value!r}")


@attrs.define
class VoxUDAConfig(MeanTeacherConfig):
    """Vox-UDA: NGM-noised source consistency, adversarial features and denoised pseudo-labels.

    Origins of defaults ([P] paper, [R] reimplementation quoting the paper, [R-own] its own choice, [I] ours)
    are in each help string and in docs/vox_uda.md; they cite /work/shared/docs/paper-notes.md.
    """

    # -- sub-components ----------------------------------------------------------------------------------
    noise: ComponentRef = ref_field(
        "ngm", help="noise model on the source (NGM [P]; 'none' = the no-NGM ablation)")
    teacher_denoiser: ComponentRef = ref_field(
        "improved_bilateral",
        help="denoiser in front of the teacher only (IBF [P]; the student sees the raw target [R])")
    student_input_denoiser: ComponentRef = ref_field(
        "identity", help="denoiser on the student's target input in training (identity [R]: raw target)")
    # -- loss weights ------------------------------------------------------------------------------------
    w_seg: float = help_field(1.0, help="weight of L_seg (CE + Dice on clean source); 1 [R]",
                              validator=non_negative)
    w_con: float = help_field(1.0, help="weight of L_con (feature consistency, clean vs noisy source); 1 [R]",
                              validator=non_negative)
    w_dis: float = help_field(1.0, help="weight of L_dis (GRL discriminator, source vs target); 1 [R]",
                              validator=non_negative)
    w_seg_noisy: float = help_field(
        0.0, help="weight of L_seg on the NGM-noised source (its labels still hold: supervision at the "
        "target's measured noise level); 0 [I]: not in the paper", validator=non_negative)
    pseudo_weight: float = help_field(
        1.0, help="w_pseudo: weight of L_pseudo (CE on confident teacher labels); 1 [R]",
        validator=non_negative)
    # -- consistency -------------------------------------------------------------------------------------
    taps: tuple[str, ...] = help_field(
        (), help="backbone taps for L_con, shallow to deep; () = the backbone's tap_names [R: four taps]")
    tap_weights: tuple[float, ...] = help_field(
        (0.2, 0.2, 0.3, 0.3), help="per-tap L_con weights, one per tap; (0.2, 0.2, 0.3, 0.3) [R]",
        validator=_non_negative_all)
    consistency: ConsistencyForm = help_field(
        "cosine", help="cosine: 1 - cos over channels per voxel [R-own]; cosine_flat: per flattened volume; "
        "mse: mean squared difference [I]")
    consistency_detach_clean: bool = help_field(
        False, help="stop gradients through the clean-source features (clean branch as a fixed target) [I]")
    # -- discriminator -----------------------------------------------------------------------------------
    discriminator_input: DiscriminatorInput = input_field()
    discriminator_tap: str = help_field(
        "", help="tap of the 'pooled' L_dis discriminator; '' = the backbone's deepest_tap [R: f_v6]")
    discriminator_taps: tuple[str, ...] = taps_field()
    discriminator_output_map: OutputMap = output_map_field()
    discriminator_mode: DiscriminatorMode = help_field(
        "pooled", help="head on a tap: pooled (one logit per volume, classic DANN) or voxel; architecture "
        "unknown [I]")
    discriminator_hidden: int = hidden_field()
    discriminator_standardize: bool = standardize_field()
    adversarial_form: AdversarialForm = form_field("grl")
    discriminator_lr_scale: float = lr_scale_field()
    discriminator_warmup_steps: int = warmup_field()
    grl_schedule: Literal["constant", "dann"] = help_field(
        "dann", help="gradient-reversal weight: constant grl_lambda, or DANN's 2/(1+exp(-10 p))-1 ramp [I]")
    grl_lambda: float = help_field(1.0, help="gradient-reversal weight (the maximum under 'dann') [I]",
                                   validator=non_negative)
    # -- mean-teacher defaults that Vox-UDA changes ------------------------------------------------------
    ema_momentum: float = help_field(0.999, help="teacher EMA momentum; 0.999 [R-own] (for long schedules)",
                                     validator=unit_interval)
    confidence_threshold: float = help_field(
        0.85, help="teacher confidence below which voxels are ignored; 0.85 [R-own]",
        validator=unit_interval)
    augment: bool = help_field(
        False, help="flip/rotate the student's target view (pseudo-labels follow); off [R]: raw target")
    predict_with: Literal["teacher", "student"] = help_field(
        "teacher", help="network behind predictor(): the EMA teacher [I] (smoother) or the student; "
        "test-time input denoising is the trainer's evaluation.input_denoiser")


def adversary_settings(config: VoxUDAConfig) -> AdversarySettings:
    """L_dis's discriminator settings from the config (shared with DANN through DomainAdversary)."""
    return AdversarySettings(
        input=config.discriminator_input, tap=config.discriminator_tap, taps=tuple(config.discriminator_taps),
        mode=config.discriminator_mode, hidden=config.discriminator_hidden,
        output_map=config.discriminator_output_map, warmup_steps=config.discriminator_warmup_steps,
        lr_scale=config.discriminator_lr_scale, schedule=config.grl_schedule, max_weight=config.grl_lambda,
        gamma=10.0, tap_key="method.discriminator_tap", standardize=config.discriminator_standardize,
        form=config.adversarial_form,
    )


def feature_consistency(clean: Tensor, noisy: Tensor, form: ConsistencyForm) -> Tensor:
    """Distance between student features of clean and noisy source, ``(N, C, *spatial)`` each.

    ``cosine`` compares each voxel's channel vector (1 - cosine similarity, mean over voxels and batch);
    ``cosine_flat`` compares each sample's whole flattened feature map; ``mse`` is the mean squared
    difference. All are exactly 0 when ``clean`` equals ``noisy``.

    1 - cos is computed as ``0.5 |a/|a| - b/|b||^2`` with zero vectors left at zero. The two agree for
    non-zero vectors, but after a ReLU whole channel vectors are often zero, where ``F.cosine_similarity``
    returns 0 and would charge a loss of 1 for two identical (zero) features.
    """
    if clean.shape != noisy.shape:
        raise ValueError(f"consistency: feature shapes differ, {tuple(clean.shape)} vs {tuple(noisy.shape)}")
    a, b = clean.float(), noisy.float()
    if form == "mse":
        return F.mse_loss(b, a)
    if form == "cosine_flat":
        a, b = a.flatten(1), b.flatten(1)
    return _UnitVectorDistance.apply(a, b)


class _UnitVectorDistance(torch.autograd.Function):
    """``0.5 |a/|a| - b/|b||^2`` summed over dim 1, mean over the rest, with ``F.normalize``'s ``eps = 1e-8``.

    Written out in both directions because autograd's version, through two normalisations and their
    broadcasts over the channel axis, cost more than the student's whole forward pass at the quick size
    (docs/performance.md). Both directions work from three per-vector reductions, ``|a|``, ``|b|`` and
    ``a . b``, so no full-size intermediate (``a/|a|``, the difference) is made or kept: with
    ``ca = max(|a|, eps)``, ``cb = max(|b|, eps)`` the value is
    ``0.5 (|a|^2/ca^2 + |b|^2/cb^2) - a.b/(ca cb)``
    (equal to the normalised expression up to float rounding: within 1e-6 relative, tested), and the gradient
    is ``a (1 - [|a| >= eps] dot_a)/ca^2 - b/(ca cb)`` for ``a`` with ``dot_a = |a|^2/ca^2 - a.b/(ca cb)``
    (the bracket is ``clamp_min``'s mask: below ``eps`` the norm is a constant), the same with ``a`` and
    ``b`` swapped for ``b``; both times the upstream gradient over the number of averaged vectors
    (tests/engine/test_throughput_equivalence.py checks it against autograd's).
    """

    EPS = 1e-8

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        eps = _UnitVectorDistance.EPS
        norm_a = torch.linalg.vector_norm(a, dim=1, keepdim=True)
        norm_b = torch.linalg.vector_norm(b, dim=1, keepdim=True)
        dot = torch.linalg.vecdot(a, b, dim=1).unsqueeze(1)
        clamped_a, clamped_b = norm_a.clamp_min(eps), norm_b.clamp_min(eps)
        cross = dot / (clamped_a * clamped_b)
        ctx.save_for_backward(a, b, norm_a, norm_b, clamped_a, clamped_b, cross)
        per_vector = 0.5 * ((norm_a / clamped_a).square() + (norm_b / clamped_b).square()) - cross
        return per_vector.mean()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        a, b, norm_a, norm_b, clamped_a, clamped_b, cross = ctx.saved_tensors
        scale = grad / (a.numel() // a.shape[1])
        eps = _UnitVectorDistance.EPS
        shared = scale / (clamped_a * clamped_b)

        def one_side(x: Tensor, other: Tensor, norm: Tensor, clamped: Tensor) -> Tensor:
            along = ((norm / clamped).square() - cross) * (norm >= eps)
            return torch.mul(x, (1.0 - along) * scale / clamped.square()).addcmul_(other, shared, value=-1.0)

        grad_a = one_side(a, b, norm_a, clamped_a) if ctx.needs_input_grad[0] else None
        grad_b = one_side(b, a, norm_b, clamped_b) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class VoxUDA(MeanTeacher):
    """Vox-UDA as a :class:`MeanTeacher` plus a source noise model, a consistency and an adversarial term."""

    config: VoxUDAConfig

    def __init__(self, config: VoxUDAConfig) -> None:
        super().__init__(config)
        from voxuda.api import build_component

        self.noise = build_component("noise_model", config.noise)
        self.record_component("noise", "noise_model", config.noise)
        self.student_input_denoiser = self._frozen(build_denoiser(config.student_input_denoiser))
        self.record_component("student_input_denoiser", "denoiser", config.student_input_denoiser,
                              self.student_input_denoiser)

        self.taps = self._resolve_taps(config)
        self.tap_weights = tuple(float(w) for w in config.tap_weights)
        self.discriminator = DomainAdversary(self.student, adversary_settings(config), config.in_channels,
                                             config.num_classes)
        self.total_steps = 1
        self._sample_target: Callable[[int], Tensor] | None = None

    # -- construction helpers ----------------------------------------------------------------------------
    @staticmethod
    def _frozen(denoiser: Any) -> Any:
        if isinstance(denoiser, nn.Module):
            for parameter in denoiser.parameters():
                parameter.requires_grad_(False)
        return denoiser

    def _resolve_taps(self, config: VoxUDAConfig) -> tuple[str, ...]:
        known = tuple(getattr(self.student, "tap_names", ()))
        taps = tuple(config.taps) or known
        channels = getattr(self.student, "tap_channels", {}) or {}
        unknown = [t for t in taps if known and t not in known and t not in channels]
        if unknown:
            name = type(self.student).__name__
            raise ConfigError(f"method.taps: backbone {name} has no tap {unknown[0]!r} "
                              f"(taps: {', '.join(known)})")
        if len(config.tap_weights) != len(taps):
            raise ConfigError(f"method.tap_weights: {len(config.tap_weights)} weights for {len(taps)} taps "
                              f"{taps}; give one weight per tap")
        return taps

    # -- trainer hooks -----------------------------------------------------------------------------------
    @property
    def discriminator_tap(self) -> str:
        """The first tap L_dis reads ('' for the output-space discriminator)."""
        return next(iter(self.discriminator.taps), "")

    def on_train_start(self, context: TrainContext) -> None:
        """Share the run's generator and fit the noise model on ``n_fit_samples`` target volumes."""
        super().on_train_start(context)
        self.total_steps = max(int(context.total_steps), 1)
        self.discriminator.total_steps = self.total_steps
        self._sample_target = context.sample_target
        if self.noise.needs_target:
            self.noise.fit(context.sample_target(self.noise.n_fit_samples))
        self._check_noise_premise(context)

    def _check_noise_premise(self, context: TrainContext) -> None:
        """Measure the source's noise the way the noise model measured the target's (models with
        ``measure_source``, i.e. NGM) and warn in one line when the source is not the cleaner domain."""
        measure = getattr(self.noise, "measure_source", None)
        data = context.extra.get("data")
        source = getattr(getattr(data, "source_train", None), "volumes", None)
        if measure is None or source is None or len(source) == 0:
            return
        n = min(max(int(self.noise.n_fit_samples), 1), len(source))
        index = torch.linspace(0, len(source) - 1, n).round().long()  # evenly spaced: no draw from the RNG
        measure(source[index])
        premise = getattr(self.noise, "premise", None)
        warning = premise.warning() if premise is not None else None
        if warning:
            print(f"voxuda: warning: vox_uda: {warning}", file=sys.stderr)

    def _maybe_refit(self, step: int) -> None:
        every = self.noise.refit_every
        if every and step > 0 and step % every == 0 and self._sample_target is not None:
            self.noise.fit(self._sample_target(self.noise.n_fit_samples))

    def grl_weight(self, step: int) -> float:
        return self.discriminator.weight(step)

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """The discriminator trains at ``discriminator_lr_scale`` times the student's rate."""
        return groups_with_scaled_module(self.trainable_parameters(), self.discriminator,
                                         self.discriminator.settings.lr_scale)

    # -- the step ----------------------------------------------------------------------------------------
    def consistency_loss(self, clean: dict[str, Tensor], noisy: dict[str, Tensor]) -> tuple[Tensor, dict]:
        """Weighted sum over taps of :func:`feature_consistency`; also returns each tap's value."""
        total = torch.zeros((), device=next(iter(clean.values())).device)
        parts: dict[str, float] = {}
        for tap, weight in zip(self.taps, self.tap_weights):
            reference = clean[tap].detach() if self.config.consistency_detach_clean else clean[tap]
            value = feature_consistency(reference, noisy[tap], self.config.consistency)
            parts[f"con_{tap}"] = float(value.detach())
            total = total + weight * value
        return total, parts

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        cfg = self.config
        if self.noise.needs_target and not self.noise.fitted:
            raise RuntimeError("vox_uda: the noise model is not fitted; the trainer must call "
                               "on_train_start(context) before the first training_step")
        self._maybe_refit(step)
        losses: dict[str, float] = {}
        metrics: dict[str, float] = {}

        logits_s, feats_s = self.student(source.volume)
        seg, parts = self.seg_loss(logits_s, source.label)
        total = cfg.w_seg * seg
        losses.update(seg=float(seg.detach()), **parts)

        if cfg.w_con > 0 or cfg.w_seg_noisy > 0:
            noisy = self.noise(source.volume, self.generator)
            logits_n, feats_n = self.student(noisy)
            if cfg.w_con > 0:
                con, con_parts = self.consistency_loss(feats_s, feats_n)
                total = total + cfg.w_con * con
                losses.update(con=float(con.detach()), **con_parts)
            if cfg.w_seg_noisy > 0:
                seg_noisy, _ = self.seg_loss(logits_n, source.label)
                total = total + cfg.w_seg_noisy * seg_noisy
                losses["seg_noisy"] = float(seg_noisy.detach())
        sigma2 = self.noise.state().get("sigma2")
        if sigma2 is not None:
            metrics["noise_sigma2"] = float(sigma2)

        pseudo_w = self.pseudo_weight(step)
        metrics["pseudo_weight"] = pseudo_w
        need_target_student = cfg.w_dis > 0 or pseudo_w > 0
        if need_target_student:
            pseudo = (self.make_pseudo_labels(self.teacher_input(target.volume, target.index))
                      if pseudo_w > 0 else None)
            student_view = self.student_target_input(target.volume)
            labels = mask = None
            if pseudo is not None:
                student_view, labels, mask = self.augmented_target(student_view, pseudo)
            logits_t, feats_t = self.student(student_view)
            if cfg.w_dis > 0:
                adversary = self.discriminator(logits_s, feats_s, logits_t, feats_t, step)
                total = total + cfg.w_dis * adversary.loss
                losses["dis"] = float(adversary.loss.detach())
                metrics.update(adversary.metrics())
            if pseudo is not None and labels is not None and mask is not None:
                pseudo_loss, pseudo_parts, logged = self.pseudo_objective(logits_t, pseudo, labels, mask)
                total = total + pseudo_w * pseudo_loss
                losses.update(pseudo_parts)
                metrics.update(logged)
        losses["total"] = float(total.detach())
        return StepOutput(loss=total, losses=losses, metrics=metrics)

    def student_target_input(self, volume: Tensor) -> Tensor:
        """The student's target view before augmentation: the raw target unless a denoiser is configured."""
        with torch.no_grad():
            return self.student_input_denoiser(volume)

    # -- what the trainer and run.json see ---------------------------------------------------------------
    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Student and discriminator parameters; never the teacher or any denoiser."""
        frozen = {id(p) for p in self.teacher.parameters()}
        for module in (self.teacher_denoiser, self.student_input_denoiser):
            if isinstance(module, nn.Module):
                frozen |= {id(p) for p in module.parameters()}
        return (p for p in self.parameters() if p.requires_grad and id(p) not in frozen)

    def get_extra_state(self) -> dict[str, Any]:
        """The noise model's fitted statistics travel in the method's ``state_dict`` (checkpoints), so a
        resumed run adds the same noise as the uninterrupted one even with ``refit_every``."""
        return {"noise": self.noise.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.noise.load_state_dict(state.get("noise", {}))

    def components(self) -> dict[str, Any]:
        records = super().components()
        records["noise"] = {**records["noise"], "state": self.noise.state()}
        return records

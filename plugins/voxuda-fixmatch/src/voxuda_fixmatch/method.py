"""FixMatch (Sohn et al., NeurIPS 2020) as a 3D segmentation UDA method.

Per step: supervised CE + Dice on source; on the target batch, the student (no gradient) labels a *weak*
view (flips / quarter turns) and the voxels its pseudo-label selection keeps (``pseudo_label_selection``:
max softmax >= ``confidence_threshold`` as in the paper, CBST-style class balance, or a class-proportion
prior; :mod:`voxuda.methods.pseudo_labels`, shared with the mean teacher and Vox-UDA) become hard
pseudo-labels for the student on a *strong* view (a further flip / quarter turn, intensity jitter,
Gaussian noise, blur and 3D cutout), with cross-entropy averaged over the kept voxels (``pseudo_loss =
"ce_dice"`` adds soft Dice on them, as for the mean teacher and Vox-UDA). Unlike the mean
teacher there is no EMA network: the consistency between views is the whole signal, and the threshold
keeps early, unreliable predictions out of it. ``pseudo_keep_fraction`` (after cutout),
``pseudo_confident_fraction`` (selected, before cutout), ``pseudo_fg_fraction`` (foreground share of the kept
labels), ``teacher_fg_fraction`` (the weak view's argmax foreground share) and ``fg_prior`` are logged because
they are what to watch when self-training stalls (too few voxels) or collapses (all voxels one class).
"""

from __future__ import annotations

import attrs
import torch

from voxuda.plugin_api import (
    PseudoLabelConfig,
    PseudoLabelSelector,
    SegmentationMethod,
    SourceBatch,
    StepOutput,
    TargetBatch,
    TrainContext,
    help_field,
    non_negative,
    selection_metrics,
    unit_interval,
)
from voxuda_fixmatch.photometric import StrongPhotometric
from voxuda_fixmatch.views import Views, make_views, to_strong_targets


@attrs.define
class FixMatchConfig(PseudoLabelConfig):
    """Configuration of :class:`FixMatch` (pseudo-label selection fields: :class:`PseudoLabelConfig`)."""

    confidence_threshold: float = help_field(
        0.95, help="weak-view confidence (max softmax) a voxel needs to become a pseudo-label (paper: 0.95); "
        "prior selection: background needs p_fg <= 1 - this",
        validator=unit_interval,
    )
    unlabeled_weight: float = help_field(
        1.0, help="weight lambda_u of the strong-view pseudo-label loss", validator=non_negative
    )
    warmup_steps: int = help_field(0, help="initial steps trained on source only", validator=non_negative)
    weak_flip_rot: bool = help_field(True, help="weak view: random flips and quarter turns")
    strong_flip_rot: bool = help_field(
        True, help="strong view: a further random flip / quarter turn (pseudo-labels follow it)"
    )
    intensity_scale: float = help_field(
        0.2, help="strong: multiply by U[1-a, 1+a]", validator=unit_interval
    )
    intensity_shift: float = help_field(
        0.2, help="strong: add U[-b, b] times the volume's std", validator=non_negative
    )
    noise_std: float = help_field(
        0.3, help="strong: add Gaussian noise of std U[0, s] times the volume's std", validator=non_negative
    )
    blur_sigma: float = help_field(
        1.0, help="strong: Gaussian blur of sigma U[sigma/4, sigma] voxels (0 disables)",
        validator=non_negative,
    )
    blur_prob: float = help_field(
        0.5, help="strong: probability of blurring a volume", validator=unit_interval
    )
    cutout_fraction: float = help_field(
        0.4, help="strong: cutout box sides are U[f/2, f] of each axis (0 disables); ignored in the loss",
        validator=unit_interval,
    )
    cutout_prob: float = help_field(0.5, help="strong: probability of a cutout box", validator=unit_interval)

    def photometric(self) -> StrongPhotometric:
        return StrongPhotometric(
            intensity_scale=self.intensity_scale,
            intensity_shift=self.intensity_shift,
            noise_std=self.noise_std,
            blur_sigma=self.blur_sigma,
            blur_prob=self.blur_prob,
            cutout_fraction=self.cutout_fraction,
            cutout_prob=self.cutout_prob,
        )


class FixMatch(SegmentationMethod):
    """Source supervision + confident weak-view pseudo-labels enforced on a strong view of the target."""

    config: FixMatchConfig

    def __init__(self, config: FixMatchConfig) -> None:
        super().__init__(config)
        self.strong_augment = config.photometric()
        self.generator = torch.Generator().manual_seed(0)
        self.pseudo_selector = PseudoLabelSelector(config)

    def on_train_start(self, context: TrainContext) -> None:
        """Share the run's generator (deterministic, checkpointed views); measure the source prior."""
        self.generator = context.generator
        self.pseudo_selector.on_train_start(context.extra)

    def views(self, volume: torch.Tensor) -> Views:
        cfg = self.config
        return make_views(
            volume, self.generator, self.strong_augment,
            weak_flip_rot=cfg.weak_flip_rot, strong_flip_rot=cfg.strong_flip_rot,
        )

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        cfg = self.config
        logits_s, _ = self.student(source.volume)
        seg, parts = self.seg_loss(logits_s, source.label)
        losses = {"seg": float(seg.detach()), **parts}
        if step < cfg.warmup_steps or cfg.unlabeled_weight == 0:
            return StepOutput(loss=seg, losses=losses, metrics={"pseudo_keep_fraction": 0.0})
        views = self.views(target.volume)
        with torch.no_grad():
            weak_probs = self.student(views.weak)[0].float().softmax(dim=1)
        selection = self.pseudo_selector.select(weak_probs)
        labels, mask, selected = to_strong_targets(selection.labels, selection.mask, views)
        logits_strong, _ = self.student(views.strong)
        pseudo, pseudo_parts = self.pseudo_selector.label_loss(logits_strong, labels, mask)
        losses["pseudo"] = float(pseudo.detach())
        losses.update(pseudo_parts)
        size = self.pseudo_selector.size_loss(logits_strong)
        if size is not None:
            pseudo = pseudo + size
            losses["size_prior"] = float(size.detach())
        n_kept = int(mask.sum())
        metrics = {
            **selection_metrics(selection),
            "pseudo_keep_fraction": float(mask.float().mean()),
            "pseudo_confident_fraction": float(selected.float().mean()),
            "pseudo_fg_fraction": int(((labels > 0) & mask).sum()) / n_kept if n_kept else 0.0,
        }
        return StepOutput(loss=seg + cfg.unlabeled_weight * pseudo, losses=losses, metrics=metrics)

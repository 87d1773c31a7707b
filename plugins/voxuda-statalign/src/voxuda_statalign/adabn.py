"""AdaBN (Li et al., "Revisiting batch normalization for practical domain adaptation", 2016) in 3D.

Training is plain source supervision of a backbone with BatchNorm3d layers. Adaptation happens in the
normalisation statistics only: the predictor normalises with running means/variances re-estimated on
target volumes, so target features are centred and scaled by target statistics.

How it is triggered (no trainer support needed):

1. ``on_train_start`` draws a fixed *statistics set* of ``stat_volumes`` target volumes once, with the run's
   generator (``context.sample_target``; volumes only, labels never reach this method). Because the trainer
   calls ``on_train_start`` with a freshly seeded generator before it restores a checkpoint, a resumed run
   draws the same set, so its statistics equal those of an uninterrupted run.
2. ``on_after_optimizer_step`` re-estimates the target statistics on that set after the last step (and every
   ``stat_every`` steps if set), so the ``last.pt`` checkpoint written after training already holds them.
3. ``predictor()`` re-estimates lazily when the weights changed since the last estimate (a validator
   choosing ``best.pt`` calls it before the checkpoint is written), and returns a *copy* of the student
   carrying target statistics; the student itself keeps its source statistics for training.
4. The statistics are buffers of the method (``target_stats.*``), so they are saved in every checkpoint and
   a fresh process evaluating a checkpoint predicts with them without seeing target data again.
   ``adapt_to_target(volumes)`` re-estimates them on any volumes you pass (e.g. a new tomogram's
   subtomograms at inference time).

Without ``on_train_start`` (a bare ``training_step`` loop), the first ``stat_volumes`` target volumes seen in
training form the statistics set instead.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import attrs
import torch
from torch import Tensor, nn

from voxuda.plugin_api import (
    BaseMethodConfig,
    ComponentRef,
    ConfigError,
    LogitsOnly,
    SegmentationMethod,
    SourceBatch,
    StepOutput,
    TargetBatch,
    TrainContext,
    at_least_one,
    component_ref,
    help_field,
    non_negative,
    ref_field,
)
from voxuda_statalign.bnstats import BNStatistics, batch_norm_layers, reestimate_bn_statistics


def with_batch_norm(value: object) -> ComponentRef:
    """attrs converter: the backbone ref, with ``norm="batch"`` when the backbone has a ``norm`` setting and
    the config left it unset.

    A suite's ``[defaults.method] backbone = {name = "unet3d", widths = [...]}`` replaces this method's
    default backbone table; filling in the norm keeps AdaBN meaningful there. Doing it in the config (not at
    build time) puts ``norm = "batch"`` into the run's resolved ``config.toml``, so a checkpoint is rebuilt
    with the same layers. An explicit ``norm = "group"`` is respected (and rejected by :class:`AdaBN`).
    """
    ref = component_ref(value)
    if "norm" in ref.params:
        return ref
    from voxuda.plugin_api import resolve

    try:
        config_cls = resolve("backbone", ref.name).load_config_class()
    except Exception:  # an unknown backbone: building it reports the error with the registry's hints
        return ref
    if config_cls is not None and attrs.has(config_cls) and "norm" in attrs.fields_dict(config_cls):
        return ref.with_params(norm="batch")
    return ref


@attrs.define
class AdaBNConfig(BaseMethodConfig):
    """Configuration of :class:`AdaBN`."""

    backbone: ComponentRef = ref_field(
        "unet3d", kind="backbone", converter=with_batch_norm, norm="batch",
        help="segmentation network with BatchNorm layers (norm = 'batch' is filled in when unset)",
    )
    stat_volumes: int = help_field(
        64, help="target volumes drawn once at the start of training to estimate the BN statistics on",
        validator=at_least_one,
    )
    stat_batch_size: int = help_field(
        4, help="volumes per forward pass of the statistics estimate (each pass's statistics are averaged)",
        validator=at_least_one,
    )
    stat_every: int = help_field(
        0, help="also re-estimate every this many steps (0: after the last step and on demand only)",
        validator=non_negative,
    )


class AdaBN(SegmentationMethod):
    """Source-supervised training; evaluation with BatchNorm statistics re-estimated on target volumes."""

    config: AdaBNConfig

    def __init__(self, config: AdaBNConfig) -> None:
        super().__init__(config)
        layers = batch_norm_layers(self.student)
        if not layers:
            raise ConfigError(
                f"method adabn: backbone {config.backbone.name!r} has no BatchNorm layers with running "
                "statistics, so AdaBN would change nothing; use e.g. method.backbone.norm = \"batch\""
            )
        self.target_stats = BNStatistics(layers)
        self._stat_set: Tensor | None = None  # (stat_volumes, C, D, H, W) target volumes
        self._seen: list[Tensor] = []  # fallback without on_train_start: the first target volumes seen
        self.total_steps = 0

    def on_train_start(self, context: TrainContext) -> None:
        self.total_steps = int(context.total_steps)
        volumes = context.sample_target(self.config.stat_volumes)
        if isinstance(volumes, Tensor) and volumes.shape[0] > 0:
            self._stat_set = volumes.detach()

    def training_step(self, source: SourceBatch, target: TargetBatch, step: int) -> StepOutput:
        if self._stat_set is None and sum(v.shape[0] for v in self._seen) < self.config.stat_volumes:
            self._seen.append(target.volume.detach())
        logits, _ = self.student(source.volume)
        loss, parts = self.seg_loss(logits, source.label)
        return StepOutput(loss=loss, losses={"seg": float(loss.detach()), **parts})

    def on_after_optimizer_step(self, step: int) -> None:
        self.target_stats.valid.fill_(False)
        every = self.config.stat_every
        if step + 1 == self.total_steps or (every and (step + 1) % every == 0):
            self.adapt_to_target()

    def statistics_batches(self) -> list[Tensor]:
        """The statistics set in batches of ``stat_batch_size`` (a short remainder is dropped when a full
        batch exists: the cumulative average weighs every batch equally)."""
        if self._stat_set is not None:
            volumes = self._stat_set
        elif self._seen:
            volumes = torch.cat(self._seen)[: self.config.stat_volumes]
        else:
            return []
        size = min(self.config.stat_batch_size, volumes.shape[0])
        full = volumes.shape[0] // size
        return [volumes[i * size : (i + 1) * size] for i in range(full)]

    def adapt_to_target(self, volumes: Iterable[Tensor] | None = None) -> int:
        """Re-estimate the target BN statistics on ``volumes`` (batches ``(n, C, D, H, W)``).

        Without ``volumes``, the statistics set is used. Returns the number of batches used (0 leaves the
        statistics as they were).
        """
        batches = self.statistics_batches() if volumes is None else list(volumes)
        work = copy.deepcopy(self.student)
        used = reestimate_bn_statistics(work, batches)
        if used:
            self.target_stats.capture(batch_norm_layers(work))
        return used

    def predictor(self) -> nn.Module:
        """A copy of the student with target BN statistics (source statistics, with a warning, if none)."""
        if not bool(self.target_stats.valid):
            self.adapt_to_target()
        net = copy.deepcopy(self.student)
        if bool(self.target_stats.valid):
            self.target_stats.apply_to(batch_norm_layers(net))
        else:
            warnings.warn(
                "adabn: no target statistics for the current weights (none loaded, and no target volumes "
                "seen); predicting with source BatchNorm statistics. Call adapt_to_target(volumes) first.",
                RuntimeWarning,
                stacklevel=2,
            )
        for parameter in net.parameters():
            parameter.requires_grad_(False)
        return LogitsOnly(net)

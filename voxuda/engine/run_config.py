"""The run configuration: one TOML file (``seed``, ``[data]``, ``[method]``, ``[trainer]``, ``[evaluation]``).

Everything is checked before any work starts: unknown keys, wrong types, unknown components and the
method's own config (including its sub-components) fail with one :class:`~voxuda.errors.ConfigError` line
naming the key. Settings that are valid but defeat their purpose (an EMA teacher too slow for the run's
length) get one warning line each (:func:`run_config_warnings`), printed once per process and recorded in
``run.json``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import attrs

from voxuda.checks import non_negative, positive, valid_prior_range
from voxuda.config import (
    ComponentRef,
    apply_overrides,
    component_fields,
    help_field,
    load_toml,
    ref_field,
    structure,
    unstructure,
)
from voxuda.errors import ConfigError, VoxudaError


@attrs.define
class DataConfig:
    """Where the source and target subtomograms come from and how they are prepared."""

    root: str = help_field("", help="dataset folder (manifest + MRC files); required")
    preset: str = help_field(
        "", help="simulator preset (tiny, quick, paper) written to root first if root has no manifest"
    )
    preset_seed: int = help_field(
        0, help="simulator seed of the preset: the data are the same whatever run (and run seed) makes them"
    )
    source_domain: str = help_field("source", help="manifest domain of the labelled source")
    target_domain: str = help_field("target", help="manifest domain of the unlabelled target")
    train_split: str = help_field("train", help="split used for training (source and target)")
    val_split: str = help_field("val", help="held-out split for validators (source_val, target_oracle)")
    box: int = help_field(32, help="working box edge in voxels (resized to box^3)", validator=positive)
    normalization: Literal["zscore", "minmax", "none"] = help_field("zscore", help="per-volume normalisation")
    canonical_polarity: Literal["bright", "dark", "keep"] = help_field(
        "bright", help="invert volumes whose manifest polarity differs ('keep' = never invert)"
    )
    num_classes: int = help_field(2, help="label values 0..num_classes-1", validator=positive)
    manifest: str = help_field("manifest.csv", help="manifest file name inside root")
    target_root: str = help_field(
        "", help="folder of the target domain if not in root, e.g. `voxuda extract` output ('' = root)"
    )
    target_manifest: str = help_field("", help="manifest file name inside target_root ('' = manifest)")
    alignment: ComponentRef = ref_field(
        "none", kind="aligner",
        help="label-free input aligner (none, detrend, spectrum_match), fitted on the unlabelled train "
             "splits, applied to every split, in evaluation and in segment (docs/data.md, Input alignment)",
    )


@attrs.define
class TrainerConfig:
    """Optimisation and bookkeeping of the training loop."""

    steps: int = help_field(1000, help="optimiser steps", validator=positive)
    batch_size: int = help_field(8, help="source and target volumes per step (each)", validator=positive)
    sampling: Literal["random", "epoch"] = help_field(
        "random", help="random: with replacement; epoch: shuffled passes without replacement"
    )
    lr: float = help_field(1e-3, help="peak learning rate", validator=positive)
    optimizer: Literal["adam", "adamw", "sgd"] = help_field("adam", help="adam, adamw or sgd (momentum 0.9)")
    weight_decay: float = help_field(0.0, help="weight decay", validator=non_negative)
    schedule: Literal["constant", "step", "cosine"] = help_field("constant", help="learning-rate schedule")
    step_size: int = help_field(0, help="step schedule: decay every N steps (0 = steps // 3)",
                                validator=non_negative)
    step_gamma: float = help_field(0.1, help="step schedule: decay factor", validator=positive)
    warmup: int = help_field(0, help="linear learning-rate warm-up steps", validator=non_negative)
    grad_clip: float = help_field(0.0, help="clip the global gradient norm to this (0 = off)",
                                  validator=non_negative)
    amp: bool = help_field(False, help="autocast to bfloat16 (CPU) or float16/bfloat16 (CUDA) in the forward")
    log_every: int = help_field(1, help="write metrics.jsonl every N steps", validator=positive)
    eval_every: int = help_field(0, help="run the validator every N steps (0 = only at the end)",
                                 validator=non_negative)
    checkpoint_every: int = help_field(0, help="write last.pt every N steps (0 = only at the end)",
                                       validator=non_negative)
    num_threads: int = help_field(2, help="torch CPU threads (torch.set_num_threads)", validator=positive)
    device: str = help_field("auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    deterministic: bool = help_field(True, help="torch.use_deterministic_algorithms (warn only)")
    progress: bool = help_field(True, help="show a tqdm progress bar with running losses")


#: test-time orientation averages (``evaluation.tta``, ``--tta``; :mod:`voxuda.engine.inference`): none, the
#: 4 wedge-preserving orientations, or all 8 flips (a symmetric tilt range only)
TestTimeOrientations = Literal["none", "wedge", "flips"]
TEST_TIME_ORIENTATIONS: tuple[str, ...] = get_args(TestTimeOrientations)
#: label-free estimates of the target's foreground fraction for the test-time decision
#: (``evaluation.prior_estimate``; :mod:`voxuda.engine.decision`)
PriorEstimator = Literal["none", "em", "em_calibrated"]
PRIOR_ESTIMATORS: tuple[str, ...] = get_args(PriorEstimator)


@attrs.define
class EvaluationConfig:
    """Model selection and test-time options."""

    selection: str = help_field("last", help="'last' or a registered validator (source_val, entropy, ...)")
    validator: ComponentRef | None = ref_field(
        None, kind="validator",
        help="optional table of validator parameters ({name = ..., ...}); overrides 'selection'",
    )
    input_denoiser: ComponentRef = ref_field(
        "identity", kind="denoiser", help="denoiser applied to model input at evaluation")
    batch_size: int = help_field(8, help="evaluation batch size", validator=positive)
    split: str = help_field("test", help="split evaluated at the end of training ('' = skip)")
    fg_prior: tuple[float, ...] = help_field(
        (), help="[lo, hi]: the user's foreground fraction range; the foreground threshold is calibrated on "
        "the unlabelled target train split so that its predicted fraction is argmax's clamped into the range "
        "(voxuda.engine.decision); [] = argmax", validator=valid_prior_range)
    source_prior: bool = help_field(
        False, help="without fg_prior: calibrate that threshold so the unlabelled target train split's "
        "predicted fraction is the labelled source train split's foreground fraction (target occupancy as "
        "the source's, as the 'prior' pseudo-label selection assumes; for appearance shifts)",
        validator=lambda inst, _a, value: _one_prior(inst, value))
    prior_estimate: PriorEstimator = help_field(
        "none", help="without fg_prior or source_prior: 'em' aims that threshold at a label-free estimate of "
        "the target's foreground fraction, the Saerens-Latinne-Decaestecker EM re-estimation of the prior "
        "from the network's probabilities on the unlabelled target train split, starting from its mean "
        "probability on the held-out source (for an occupancy shift; voxuda.engine.decision); "
        "'em_calibrated': the same after calibrating the probabilities on the labelled held-out source "
        "(bias-corrected temperature scaling); 'none' = off",
        validator=lambda inst, _a, value: _one_estimate(inst, value))
    tta: TestTimeOrientations = help_field(
        "none", help="test-time orientation average of the evaluated network's probabilities: none, wedge "
        "(the 4 orientations that keep any missing wedge: flip y, 180-degree (z, x) turn) or flips (all 8; "
        "a symmetric tilt range only)")
    select_start: bool = help_field(
        False, help="also score the weights a run starts from (step 0: an adaptation run's warm start) as a "
        "checkpoint candidate, so a run whose adaptation lowers the validator's score falls back to them")


def _one_estimate(evaluation: EvaluationConfig, estimator: str) -> None:
    if estimator != "none" and (evaluation.fg_prior or evaluation.source_prior):
        other = "fg_prior" if evaluation.fg_prior else "source_prior"
        raise ValueError(f"prior_estimate = {estimator!r} and {other} both set the test-time foreground "
                         "fraction; keep one")


def _one_prior(evaluation: EvaluationConfig, source_prior: bool) -> None:
    if source_prior and evaluation.fg_prior:
        raise ValueError("source_prior = true and fg_prior = [lo, hi] both set the test-time foreground "
                         "fraction; keep one")


@attrs.define
class RunConfig:
    """A whole training run."""

    method: ComponentRef = ref_field(
        "source_only", kind="method", help="adaptation method and its parameters")
    seed: int = help_field(0, help="seed of everything (weights, sampling, augmentation)")
    data: DataConfig = help_field(attrs.Factory(DataConfig), help="data")
    trainer: TrainerConfig = help_field(attrs.Factory(TrainerConfig), help="trainer")
    evaluation: EvaluationConfig = help_field(attrs.Factory(EvaluationConfig), help="evaluation")

    @property
    def selection_ref(self) -> ComponentRef | None:
        """The validator used for selection, or ``None`` for 'last'."""
        if self.evaluation.validator is not None:
            return self.evaluation.validator
        if self.evaluation.selection == "last":
            return None
        return ComponentRef(self.evaluation.selection)

    def to_dict(self) -> dict[str, Any]:
        return unstructure(self)


def run_config_from_dict(data: Mapping[str, Any], *, check_components: bool = True) -> RunConfig:
    """Structure and validate a run config; every problem is one :class:`ConfigError` line."""
    config: RunConfig = structure(RunConfig, data, where="config")
    if check_components:
        check_run_config(config)
    return config


def load_run_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a TOML run config and apply ``--set key=value`` overrides."""
    data = load_toml(path)
    if overrides:
        data = apply_overrides(data, overrides)
    return run_config_from_dict(data)


def check_run_config(config: RunConfig) -> None:
    """Resolve every component ref (and structure its config) without building anything heavy.

    The refs are found by their declared kind (:func:`~voxuda.config.component_fields`), at any depth: the
    run's method, aligner, input denoiser and validator, and every component their own configs name (a
    method's backbone, noise model and denoisers, a validator's denoiser), each error naming the dotted key.
    """
    from voxuda.api import component_config

    def check(kind: str, ref: ComponentRef, key: str) -> Any:
        try:
            component = component_config(kind, ref)[1]
        except VoxudaError as exc:
            raise ConfigError(f"{key}: {exc}") from exc
        for field, sub_kind, sub_ref in component_fields(component):
            check(sub_kind, sub_ref, f"{key}.{field}")
        return component

    checked = {key: check(kind, ref, key) for key, kind, ref in component_fields(config)}
    method_config = checked["method"]
    if config.evaluation.validator is None and config.selection_ref is not None:
        check("validator", config.selection_ref, "evaluation.selection")
    if not config.data.root:
        raise ConfigError(
            "data.root: missing data path; set data.root to a dataset folder (or a new folder + data.preset)"
        )
    device = config.trainer.device
    if device not in ("cpu", "auto") and not device.startswith("cuda"):
        raise ConfigError(f"trainer.device: {device!r} is not cpu, cuda, cuda:N or auto")
    check_finite(config.to_dict())
    check_fits_backbone(config, method_config)
    for message in run_config_warnings(config, method_config):
        _warn_once(message)


def check_finite(data: Any, key: str = "") -> None:
    """Every number of a config must be finite: ``lr = inf`` or ``ce_weight = nan`` would pass a ``> 0``
    check and only fail (or silently train nothing) steps later, so any NaN or infinity anywhere is refused,
    naming its dotted key."""
    if isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(f"{key or 'config'}: must be a finite number, got {data!r}")
    if isinstance(data, Mapping):
        for name, value in data.items():
            check_finite(value, f"{key}.{name}" if key else str(name))
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            check_finite(value, f"{key}[{index}]")


def _first_width(net: Any) -> int:
    """Channels of the first convolution of a backbone (1 when it has none): its first activation's width."""
    for module in net.modules():
        out_channels = getattr(module, "out_channels", None)
        if isinstance(out_channels, int) and hasattr(module, "kernel_size"):
            return out_channels
    return 1


def check_fits_backbone(config: RunConfig, method_config: Any) -> None:
    """``data.box`` against the backbone and the machine, before any file is written: the box must be a
    multiple of the backbone's down-sampling factor (its ``divisor``; 8 for a 4-level U-Net), and one
    training step's inputs and first activations must fit in memory (``trainer.batch_size = 1e9``)."""
    ref = getattr(method_config, "backbone", None)
    if not isinstance(ref, ComponentRef):
        return
    try:  # on the meta device: shapes only, no weights allocated
        import torch

        from voxuda.methods.segmentation import build_backbone

        with torch.device("meta"):
            net = build_backbone(method_config)
    except Exception:  # a backbone that cannot be built on meta: building it for real will say what is wrong
        return
    box = config.data.box
    divisor = net.divisor  # the Backbone3D contract, checked when build_backbone built it
    if box % divisor:
        first = max(1, -(-box // divisor))
        fits = ", ".join(str(divisor * k) for k in range(first, first + 3))
        raise ConfigError(f"data.box: {box} is not a multiple of {divisor}, which backbone {ref.name!r} "
                          f"down-samples by; use data.box = {fits}, ...")
    from voxuda.resources import check_fits

    width = _first_width(net)
    voxels = float(box) ** 3
    for key, batch, training in (("trainer.batch_size", config.trainer.batch_size, True),
                                 ("evaluation.batch_size", config.evaluation.batch_size, False)):
        # source + target volumes (float32) and labels (int64), the first activation kept for backward
        per_volume = voxels * ((4 * 2 + 8 + 4 * width * 2) if training else (4 + 4 * width))
        check_fits(batch * per_volume, device=config.trainer.device, what=f"{key} {batch}",
                   detail=f"{batch} volumes of {box}^3 voxels and a first layer of {width} channels",
                   hint=f"lower {key}")


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Print ``voxuda: warning: <message>`` to stderr the first time this process sees the message (a
    benchmark checks the same config once per training session)."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"voxuda: warning: {message}", file=sys.stderr)


def teacher_schedule_check(config: RunConfig, method_config: Any = None) -> Any:
    """The teacher-momentum rule (:mod:`voxuda.methods.ema`) for a method with an EMA teacher, else None.

    A method has an EMA teacher when its config has a float ``ema_momentum``; ``ema_half_life_fraction``,
    when present and positive, sets the momentum from ``trainer.steps`` instead.
    """
    if method_config is None:
        from voxuda.api import component_config

        method_config = component_config("method", config.method)[1]
    momentum = getattr(method_config, "ema_momentum", None)
    if not isinstance(momentum, (int, float)) or isinstance(momentum, bool):
        return None
    from voxuda.methods.ema import teacher_schedule

    fraction = float(getattr(method_config, "ema_half_life_fraction", 0.0) or 0.0)
    return teacher_schedule(float(momentum), config.trainer.steps, fraction)


def run_config_warnings(config: RunConfig, method_config: Any = None) -> list[str]:
    """One line per setting that is valid but works against itself (today: the teacher-momentum rule)."""
    schedule = teacher_schedule_check(config, method_config)
    warning = schedule.warning() if schedule is not None else None
    return [warning] if warning else []

"""Evaluate a run folder on a target split: Dice/IoU overall, per macromolecule class and per volume.

``evaluate_run(run_dir, split="test", checkpoint="best", input_denoiser=None, invert=False)`` writes
``eval_<split>_<checkpoint>[_<denoiser>][_align-<aligner>][_inverted].json`` in the run folder and returns
the same dict. Every result carries the method's flag (e.g. "upper bound"), the selection criterion (flagged
when it leaked target labels), the test-time input denoiser and the input alignment, so no number leaves the
folder without its caveats.

The target split is aligned as the run was trained (``[data] alignment`` with the fitted statistics recorded
in ``run.json``); ``alignment=`` evaluates with another aligner instead (e.g. ``detrend`` for a run trained
without alignment: the "source-only + alignment" baseline), fitted on the dataset's unlabelled train splits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import Tensor, nn

from voxuda.config import ComponentRef, component_overrides, component_ref, load_toml
from voxuda.denoisers import build_input_denoiser, input_denoiser_ref
from voxuda.engine.checkpoint import load_checkpoint
from voxuda.engine.data import (
    DomainSplit,
    RunData,
    ensure_aligned,
    ensure_dataset,
    load_domain,
    load_source,
    load_target,
)
from voxuda.engine.decision import ReadoutSplits, calibrate_readout, readout_rule
from voxuda.engine.inference import (
    InputTransform,
    make_input_transform,
    predict_labels,
    with_test_time_orientations,
)
from voxuda.engine.metrics import SegmentationMeter
from voxuda.engine.provenance import now, write_json_atomic
from voxuda.engine.run_config import DataConfig, RunConfig, run_config_from_dict
from voxuda.engine.runtime import resolve_device
from voxuda.errors import ConfigError, VoxudaError
from voxuda.jsonio import read_json


def evaluate_predictor(
    predictor: nn.Module,
    split: DomainSplit,
    *,
    num_classes: int,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    input_transform: InputTransform | None = None,
    decision: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Any]:
    """Metrics of ``predictor`` on a labelled split (see :class:`voxuda.engine.metrics.SegmentationMeter`);
    ``decision`` turns probabilities into labels instead of argmax."""
    if split.labels is None:
        raise ConfigError("evaluation needs labelled volumes; the split has no labels")
    meter = SegmentationMeter(num_classes)
    for start in range(0, len(split), batch_size):
        index = torch.arange(start, min(start + batch_size, len(split)))
        part = split.take(index)
        pred = predict_labels(
            predictor, part.volumes, batch_size=batch_size, device=device, input_transform=input_transform,
            decision=decision,
        )
        assert part.labels is not None
        meter.update(pred, part.labels, part.class_names)
    return meter.result()


def load_run_config_from_dir(run_dir: Path) -> RunConfig:
    path = run_dir / "config.toml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.toml)")
    return run_config_from_dict(load_toml(path), check_components=False)


def _checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"--checkpoint must be best or last, got {checkpoint!r}")
    if checkpoint == "best" and (run_dir / "best.pt").is_file():
        return run_dir / "best.pt"
    path = run_dir / "last.pt"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no checkpoint (last.pt) to evaluate; train first")
    return path


def load_predictor(run_dir: Path, config: RunConfig, checkpoint: str, device: torch.device) -> tuple[
    nn.Module, Any, dict[str, Any]
]:
    """Rebuild the method from the run config, load the checkpoint and return its predictor."""
    from voxuda.api import build_method

    path = _checkpoint_path(run_dir, checkpoint)
    payload = load_checkpoint(path, map_location=device)
    method = build_method(config.method)
    method.load_state_dict(payload["method"])
    method.to(device)
    method.eval()
    info = {"requested": checkpoint, "file": path.name, "step": int(payload["step"])}
    return method.predictor(), method, info


def evaluate_run(
    run_dir: str | Path,
    *,
    split: str = "test",
    checkpoint: Literal["best", "last"] | str = "best",
    input_denoiser: str | Mapping[str, Any] | ComponentRef | None = None,
    denoiser_overrides: Sequence[str] = (),
    invert: bool = False,
    alignment: str | Mapping[str, Any] | ComponentRef | None = None,
    data_override: RunData | None = None,
    split_data: DomainSplit | None = None,
    polarity: str | None = None,
    device: str | torch.device | None = None,
    fg_prior: Sequence[float] | None = None,
    source_prior: bool | None = None,
    prior_estimate: str | None = None,
    tta: str | None = None,
) -> dict[str, Any]:
    """Evaluate the run in ``run_dir`` on target ``split`` and write ``eval_<...>.json`` there.

    ``split_data`` supplies the labelled volumes directly, used as given (tests); otherwise the target
    domain's ``split`` is read from ``[data]`` and aligned like the run's training data (or with
    ``alignment``, see the module doc); with ``data_override`` (in-memory runs) the target ``val`` split
    stands in when no files exist. ``polarity`` (dark, bright or unknown) replaces the manifest's polarity
    of every row, mapped to the run's ``canonical_polarity`` exactly as training mapped its volumes (None:
    the manifest's, as trained). ``device`` overrides the run's ``trainer.device`` (``auto``: CUDA when
    available). ``fg_prior = (lo, hi)`` replaces the run's ``evaluation.fg_prior`` (the prior-calibrated
    foreground threshold, :mod:`voxuda.engine.decision`; the result names it and goes to its own file);
    ``source_prior = True`` aims that threshold at the source train split's foreground fraction instead
    (the run's ``evaluation.source_prior`` otherwise); ``prior_estimate = "em"`` at a label-free estimate of
    the target's fraction (the run's ``evaluation.prior_estimate`` otherwise; ``"none"`` turns it and the
    run's prior off). ``tta`` (none, wedge, flips) replaces the run's
    ``evaluation.tta``: the network's probabilities averaged over those orientations of the input.
    """
    run_dir = Path(run_dir)
    config = load_run_config_from_dir(run_dir)
    device = resolve_device(config.trainer.device if device is None else device,
                            "trainer.device" if device is None else "--device")
    torch.set_num_threads(config.trainer.num_threads)
    predictor, method, info = load_predictor(run_dir, config, checkpoint, device)
    orientations = config.evaluation.tta if tta is None else tta
    predictor = with_test_time_orientations(predictor, orientations)  # calibration sees the same readout
    ref = input_denoiser_ref(
        config.evaluation.input_denoiser if input_denoiser is None else input_denoiser,
        component_overrides(denoiser_overrides, ("input_denoiser",), "evaluate")["input_denoiser"],
    )
    denoiser = build_input_denoiser(ref)
    transform = make_input_transform(denoiser, invert=invert)
    run_record = read_json(run_dir / "run.json", default={})
    data_cfg, align_record = _alignment(config, run_record, alignment)
    if split_data is None:
        split_data = _load_split(config, data_cfg, split, data_override, align_record, polarity)
    rule = readout_rule(config.evaluation, fg_prior=fg_prior, source_prior=source_prior,
                        prior_estimate=prior_estimate)

    def source_val(with_labels: bool) -> tuple[Tensor, Tensor | None]:
        held_out = _source_val(config, data_cfg, data_override, align_record, with_labels=with_labels)
        return held_out.volumes, held_out.labels

    splits = ReadoutSplits(  # the unlabelled target train split a decision is calibrated on, and the source's
        target_train=lambda: _load_split(config, data_cfg, config.data.train_split, data_override,
                                         align_record, polarity, calibration=True).volumes,
        source_val=source_val, source_train_labels=lambda: _source_train_labels(config, data_override))
    decision = calibrate_readout(predictor, rule, splits, batch_size=config.evaluation.batch_size,
                                 device=device, input_transform=transform)
    metrics = evaluate_predictor(
        predictor, split_data, num_classes=config.data.num_classes, batch_size=config.evaluation.batch_size,
        device=device, input_transform=transform, decision=decision,
    )
    selection = run_record.get("selection", {"criterion": config.evaluation.selection, "label_leak": False})
    flags = list(run_record.get("flags", []))
    if method.flag and method.flag not in flags:
        flags.append(method.flag)
    result = {
        "run": str(run_dir),
        "method": config.method.name,
        "method_flag": method.flag,
        "flags": flags,
        "selection": selection,
        "split": split,
        "domain": config.data.target_domain,
        "checkpoint": info,
        "input_denoiser": ref.to_dict(),
        "alignment": _resolved_aligner(data_cfg),
        "alignment_override": alignment is not None,
        "inverted": invert,
        "decision": decision.record() if decision is not None else {"rule": "argmax"},
        "tta": orientations,
        "polarity": _polarity_summary(split_data, polarity, config.data.canonical_polarity),
        "time": now(),
        **metrics,
    }
    name = f"eval_{split}_{checkpoint}"
    if ref.name != "identity" or ref.params:
        name += f"_{ref.name.replace(':', '-')}"
    if alignment is not None:
        name += f"_align-{data_cfg.alignment.name.replace(':', '-')}"
    if invert:
        name += "_inverted"
    if polarity is not None:
        name += f"_polarity-{polarity}"
    if fg_prior is not None:
        name += "_fgprior-" + "-".join(f"{v:g}" for v in rule.fg_prior)
    elif source_prior:
        name += "_fgprior-source"
    elif prior_estimate is not None:  # "none" too: it may differ from the run's own readout
        name += f"_fgprior-{prior_estimate}"
    if tta is not None and tta != "none":
        name += f"_tta-{tta}"
    write_json_atomic(result, run_dir / f"{name}.json")
    return result


def _resolved_aligner(cfg: DataConfig) -> dict[str, Any]:
    from voxuda.api import resolved_config

    return resolved_config("aligner", cfg.alignment)


def _alignment(
    config: RunConfig, run_record: Mapping[str, Any], override: str | Mapping[str, Any] | ComponentRef | None
) -> tuple[DataConfig, dict[str, Any] | None]:
    """The data config to align with and the fitted record to use (None: fit on the train splits).

    Without ``override`` the run's own alignment and its recorded statistics; with one, that aligner, reusing
    the run's statistics only when the run was trained with exactly that aligner.
    """
    recorded = run_record.get("alignment")
    recorded = recorded if isinstance(recorded, dict) else None
    if override is None:
        return config.data, recorded
    cfg = attrs.evolve(config.data, alignment=component_ref(override))
    try:
        wanted = _resolved_aligner(cfg)
    except VoxudaError as exc:
        raise ConfigError(f"alignment: {exc}") from exc
    same = recorded is not None and recorded.get("aligner") == wanted
    return cfg, recorded if same else None


def _polarity_summary(split: DomainSplit, override: str | None, canonical: str) -> dict[str, Any]:
    """How the evaluated volumes were mapped: the input polarity (``manifest`` when not overridden), the
    run's canonical polarity and how many volumes were inverted to reach it."""
    inverted = sum(bool(m.get("polarity_inverted")) for m in split.meta)
    return {"input": override or "manifest", "canonical": canonical, "inverted": inverted,
            "volumes": len(split)}


def _in_memory(config: RunConfig) -> bool:
    """True when the run's data folder holds no manifest: evaluation then uses the in-memory data given."""
    return not config.data.root or not (Path(config.data.root) / config.data.manifest).is_file()


def _source_train_labels(config: RunConfig, data_override: RunData | None) -> Tensor | None:
    """The labels of the run's source train split (what ``source_prior`` measures its fraction on)."""
    if data_override is not None and _in_memory(config):
        return data_override.source_train.labels
    root = ensure_dataset(config.data)
    return load_domain(config.data, root, config.data.source_domain, config.data.train_split,
                       with_labels=True).labels


def run_source_val(run_dir: str | Path, *, with_labels: bool = False) -> DomainSplit:
    """The held-out source split of the run in ``run_dir``, aligned as the run recorded (labels only when
    asked): where ``voxuda segment --prior-estimate em`` measures the network's own foreground prior."""
    run_dir = Path(run_dir)
    config = load_run_config_from_dir(run_dir)
    record = read_json(run_dir / "run.json", default={}).get("alignment")
    return _source_val(config, config.data, None, record if isinstance(record, dict) else None,
                       with_labels=with_labels)


def _source_val(config: RunConfig, data_cfg: DataConfig, data_override: RunData | None,
                record: dict[str, Any] | None, *, with_labels: bool) -> DomainSplit:
    """The run's held-out source split, aligned like its target (the network's own foreground prior is
    measured on it; its labels are read only to calibrate, ``em_calibrated``)."""
    if data_override is not None and _in_memory(config):
        data = ensure_aligned(data_override, data_cfg, record)
        if data.source_val is None:
            raise ConfigError("evaluation.prior_estimate: the in-memory data have no held-out source split "
                              "to measure the network's prior on")
        return data.source_val
    root = ensure_dataset(data_cfg)
    return load_source(data_cfg, root, data_cfg.val_split, with_labels=with_labels, alignment=record)


def _load_split(config: RunConfig, data_cfg: DataConfig, split: str, data_override: RunData | None,
                record: dict[str, Any] | None, polarity: str | None = None, *,
                calibration: bool = False) -> DomainSplit:
    """The target ``split``, aligned with ``record``; ``calibration``: the unlabelled train split a decision
    rule is calibrated on (labels not read)."""
    if data_override is not None and _in_memory(config):
        if polarity is not None:
            raise ConfigError("--polarity: in-memory data have no manifest polarity to replace; "
                              "evaluate a dataset on disk")
        data = ensure_aligned(data_override, data_cfg, record)
        if calibration:
            return data.target_train
        if data.target_val is None:
            raise ConfigError("in-memory data has no labelled target split to evaluate")
        return data.target_val
    root = ensure_dataset(data_cfg)
    row_polarity = {"unknown": ""}.get(polarity, polarity) if polarity is not None else None
    return load_target(data_cfg, root, split, alignment=record, polarity=row_polarity,
                       with_labels=not calibration)

"""Load a trained model for segmentation from a run folder or a checkpoint file.

A run folder (written by ``voxuda train``) holds ``config.toml`` (the resolved run config), ``run.json`` and
checkpoints (``best.pt`` when a validator selected one, ``last.pt`` always). The method is rebuilt from the
config through the registry, so plugin backbones work like built-in ones; the checkpoint is read with
``torch.load(weights_only=True)`` (no arbitrary unpickling) and loaded strictly, because a silently partial
load of a checkpoint from another backbone would produce plausible-looking garbage.

Besides the network this module reads what preprocessing training used: ``[data] normalization``, the
voxel size the model was trained at (``run.json`` ``data.voxel_size``; see docs/segment.md), the input
alignment with its fitted statistics (``run.json`` ``alignment``; docs/data.md, "Input alignment") and the
training polarity (``run.json`` ``polarity``, see :mod:`voxuda.segment.polarity`).

The predictor is ``method.predictor()``: the network the method reports (a mean teacher's or Vox-UDA's
teacher when ``predict_with`` says so, AdaBN's student with target statistics), exactly what evaluation and
the benchmark score.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, TypeGuard

import attrs
import torch
from torch import nn

from voxuda.backbones.blocks import input_divisor
from voxuda.config import load_toml
from voxuda.errors import VoxudaError
from voxuda.jsonio import read_json
from voxuda.segment.errors import SegmentError
from voxuda.segment.polarity import canonical_of_run

__all__ = ["LoadedModel", "load_model", "find_run_files", "state_dict_of"]

CHECKPOINT_NAMES = ("best.pt", "last.pt")


@attrs.define
class LoadedModel:
    """A predictor ready for inference plus what segmentation needs to prepare its input."""

    predictor: nn.Module
    num_classes: int
    normalization: str = "zscore"
    voxel_size: float | None = None
    divisor: int = 1
    checkpoint: Path | None = None
    run_dir: Path | None = None
    config: dict[str, Any] = attrs.field(factory=dict)
    #: the run's input alignment as recorded in run.json (aligner config + fitted state), if any
    alignment: dict[str, Any] | None = None
    #: the run's ``canonical_polarity`` (bright, dark or keep; None: not recorded); voxuda.segment.polarity
    canonical_polarity: str | None = None
    #: which of the method's networks predicts ("teacher", "student"; "" for a bare module)
    network: str = ""


def find_run_files(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(run_dir, checkpoint)`` for a run folder (best.pt, else last.pt) or a checkpoint file."""
    p = Path(path)
    if p.is_dir():
        for name in CHECKPOINT_NAMES:
            if (p / name).is_file():
                return p, p / name
        raise SegmentError(f"{p}: run folder holds no checkpoint (best.pt or last.pt); train it first")
    if p.is_file():
        for folder in (p.parent, p.parent.parent):
            if (folder / "config.toml").is_file():
                return folder, p
        raise SegmentError(f"{p}: no config.toml beside the checkpoint or one folder up; pass the run folder")
    raise SegmentError(f"{p}: no such run folder or checkpoint")


#: suffix of the key under which ``nn.Module.get_extra_state`` stores non-tensor state (e.g. the fitted noise
#: statistics of ``vox_uda``); such a value is a plain container, not a tensor
EXTRA_STATE = "_extra_state"


def _data_table(config: dict[str, Any]) -> dict[str, Any]:
    """The ``[data]`` table of a run's config.toml (empty when it has none)."""
    data = config.get("data")
    return data if isinstance(data, dict) else {}


def _is_state_dict(candidate: Any) -> TypeGuard[dict[str, Any]]:
    """A module state dict: tensors by key, plus any ``*._extra_state`` containers a module writes."""
    return isinstance(candidate, dict) and bool(candidate) and all(
        isinstance(v, torch.Tensor) or (isinstance(k, str) and k.rpartition(".")[2] == EXTRA_STATE)
        for k, v in candidate.items()
    ) and any(isinstance(v, torch.Tensor) for v in candidate.values())


def state_dict_of(payload: Any, path: Path) -> dict[str, Any]:
    """The method's state dict in a checkpoint (voxuda format ``{"method": ...}`` or a bare state dict)."""
    if isinstance(payload, dict):
        for key in ("method", "model", "state_dict"):
            inner = payload.get(key)
            if _is_state_dict(inner):
                return inner
        if _is_state_dict(payload):
            return payload
    raise SegmentError(f"{path}: not a voxuda checkpoint (no model state dict inside)")


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign or pickled-object files all land here
        from voxuda.engine.checkpoint import load_error_detail  # never torch's advice to drop weights_only

        raise SegmentError(f"{path}: not a readable checkpoint ({load_error_detail(exc)})") from exc
    return state_dict_of(payload, path)


def _describe_mismatch(module: nn.Module, state: dict[str, Any]) -> str | None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and isinstance(own[k], torch.Tensor)
              and tuple(own[k].shape) != tuple(getattr(state[k], "shape", ()))]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        theirs, ours = tuple(getattr(state[k], "shape", ())), tuple(own[k].shape)
        parts.append(f"{len(shapes)} of another shape (e.g. {k}: {theirs} vs {ours})")
    return ", ".join(parts)


def _run_record(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of the run, or an empty dict when it is missing or unreadable."""
    return read_json(run_dir / "run.json", default={})


def _model_voxel_size(record: dict[str, Any], config: dict[str, Any]) -> float | None:
    """The voxel size (Å) of the model's training input, if the run recorded it."""
    candidates: list[Any] = []
    if record:
        recorded = record.get("data")
        data: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
        candidates += [data.get("voxel_size"), data.get("target_voxel_size"), record.get("voxel_size")]
    data_cfg = _data_table(config)
    candidates.append(data_cfg.get("voxel_size"))
    for value in candidates:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and math.isfinite(value) and value > 0:
            return float(value)
    return None


def load_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the run's method from ``config.toml``, load the checkpoint strictly, return its predictor."""
    from voxuda.api import build_method

    run_dir, checkpoint = find_run_files(path)
    config = load_toml(run_dir / "config.toml")
    method_ref = config.get("method")
    if method_ref is None:
        raise SegmentError(f"{run_dir / 'config.toml'}: no [method] table; is this a voxuda run folder?")
    try:
        method = build_method(method_ref)
    except VoxudaError as exc:
        raise SegmentError(f"{run_dir / 'config.toml'}: cannot build the method ({exc})") from exc
    state = _read_checkpoint(checkpoint)
    problem = _describe_mismatch(method, state)
    if problem is not None:
        backbone = getattr(getattr(method, "config", None), "backbone", None)
        name = getattr(backbone, "name", "?")
        raise SegmentError(
            f"{checkpoint}: checkpoint does not fit the {type(method).__name__} with backbone {name!r} of "
            f"{run_dir / 'config.toml'}: {problem}; use the config.toml of the run that wrote this checkpoint"
        )
    method.load_state_dict(state, strict=True)
    record = _run_record(run_dir)
    reported = str(getattr(method, "reported_network", "") or "")
    recorded = record.get("reported_network")
    if recorded and reported and recorded != reported:
        raise SegmentError(
            f"{run_dir}: run.json records predictions by the {recorded!r} network, but config.toml rebuilds "
            f"a method that reports its {reported!r} network; use the config.toml the run wrote"
        )
    predictor = method.predictor().to(device).eval()
    data_cfg = _data_table(config)
    method_classes = getattr(getattr(method, "config", None), "num_classes", 0)
    num_classes = int(method_classes or data_cfg.get("num_classes", 2))
    alignment = record.get("alignment")
    return LoadedModel(
        predictor=predictor,
        num_classes=num_classes,
        normalization=str(data_cfg.get("normalization", "zscore")),
        voxel_size=_model_voxel_size(record, config),
        divisor=input_divisor(predictor),
        checkpoint=checkpoint,
        run_dir=run_dir,
        config=config,
        alignment=alignment if isinstance(alignment, dict) else None,
        canonical_polarity=canonical_of_run(record, config),
        network=reported,
    )

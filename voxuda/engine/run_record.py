"""``run.json`` and ``config.toml`` of a run folder: what a run records about itself, and when.

Why apart from the training loop: the record is provenance (resolved config, component origins, data and
polarity, flags, op backend, drift), assembled from the trainer's state at three moments (a fresh start, a
resume, the end of a session); none of it changes what is trained. :mod:`voxuda.engine.trainer` calls
:func:`start_record`, :func:`resume_record` and :func:`finish_record` and writes the result; the state they
read is described by :class:`RunState` so that this module never imports the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from voxuda.components import SubComponents
from voxuda.engine import provenance
from voxuda.engine.data import RunData
from voxuda.engine.distributed import DistContext
from voxuda.engine.drift import INIT_CHECKPOINT, drift_record, load_initial_weights
from voxuda.engine.run_config import RunConfig, run_config_warnings, teacher_schedule_check
from voxuda.engine.validators import is_label_leak
from voxuda.jsonio import read_json
from voxuda.methods.base import Method


class RunState(Protocol):
    """The parts of a training session (:class:`voxuda.engine.trainer._Trainer`) that the record reads
    (read-only properties, so that any object holding these attributes qualifies)."""

    @property
    def method(self) -> Method: ...
    @property
    def validator(self) -> Any: ...
    @property
    def input_denoiser(self) -> Any: ...
    @property
    def data(self) -> RunData: ...
    @property
    def dist(self) -> DistContext: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def selection_name(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def best_score(self) -> float | None: ...
    @property
    def best_step(self) -> int | None: ...

def resolved_run_config(config: RunConfig) -> dict[str, Any]:
    """The run config with every component's defaults filled in (what ``config.toml`` holds): each declared
    component field (:func:`~voxuda.config.component_fields`), and the validator that ``selection`` names."""
    from voxuda.api import resolved_config
    from voxuda.config import component_fields, set_dotted

    data = config.to_dict()
    for key, kind, ref in component_fields(config):
        set_dotted(data, key.split("."), resolved_config(kind, ref))
    selection = config.selection_ref
    if selection is not None:
        data["evaluation"]["validator"] = resolved_config("validator", selection)
    return data


def op_backend_used(state: RunState) -> str | None:
    """The op backend this run's denoisers filtered on (None before any did, or when none uses one)."""
    view = getattr(state.validator, "denoiser", None)  # the label-free validators' second view
    return provenance.op_backend_used(state.method, view, state.input_denoiser)


def start_record(config: RunConfig, state: RunState) -> dict[str, Any]:
    """The ``run.json`` of a fresh run, written before its first step."""
    method = state.method
    components: dict[str, Any] = {"method": provenance.component_record("method", config.method)}
    components.update(method.components())
    selection = config.selection_ref
    if selection is not None:
        components["validator"] = provenance.component_record("validator", selection)
    if isinstance(state.validator, SubComponents):  # what its config names, e.g. a denoised view's denoiser
        for key, record in state.validator.components().items():
            components[f"validator.{key}"] = record
    components["input_denoiser"] = provenance.component_record("denoiser", config.evaluation.input_denoiser)
    components["aligner"] = provenance.component_record("aligner", config.data.alignment)
    flags = []
    if method.flag:
        flags.append(method.flag)
    leak = state.validator is not None and is_label_leak(state.validator)
    if leak:
        flags.append(getattr(state.validator, "flag", "label leak"))
    schedule = teacher_schedule_check(config)
    return {
        "seed": config.seed,
        "warnings": run_config_warnings(config),
        "teacher_schedule": schedule.to_dict() if schedule is not None else None,
        "data": data_record(state.data, sees_target=method.sees_target),
        "polarity": _polarity_record(config, state.data),
        "distributed": {"world_size": state.dist.world_size, "backend": state.dist.backend or None},
        "config": resolved_run_config(config),
        "versions": provenance.package_versions(),
        "components": components,
        "method_flag": method.flag,
        "uses_target_labels": bool(method.uses_target_labels),
        "selection": {"criterion": state.selection_name, "label_leak": leak},
        "flags": flags,
        "input_denoiser": config.evaluation.input_denoiser.to_dict(),
        "alignment": state.data.alignment,  # the aligner and its fitted statistics (e.g. both spectra)
        "device": str(state.device),
        "num_threads": config.trainer.num_threads,
        "numerics": provenance.numerics(str(state.device), config.trainer.num_threads),
        "op_backend": op_backend_used(state),
        "start_time": provenance.now(),
        "end_time": None,
    }


def resume_record(run_json: Path, step: int, numerics: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a resumed run: its ``run.json`` (``{}`` for a folder without one) with this session's
    start appended to ``resumed``, with the numerics it continues on (:func:`provenance.numerics`: a run
    resumed on another machine is no longer bit-reproducible). A malformed ``run.json`` is an error naming
    it, not a fresh record."""
    record: dict[str, Any] = read_json(run_json, default={})
    session: dict[str, Any] = {"time": provenance.now(), "step": step}
    if numerics is not None:
        session["numerics"] = numerics
    record.setdefault("resumed", []).append(session)
    return record


def finish_record(record: dict[str, Any], state: RunState, out_dir: Path, *,
                  completed: bool) -> dict[str, Any]:
    """``record`` updated at the end of a session: step, completion, best checkpoint, op backend (the one
    recorded at the start when no denoiser ran since) and each network's drift from ``init.pt``."""
    record.update(
        {
            "end_time": provenance.now() if completed else None,
            "step": state.step,
            "completed": completed,
            "best": {"score": state.best_score, "step": state.best_step},
            "op_backend": op_backend_used(state) or record.get("op_backend"),
            **drift_record(state.method, load_initial_weights(out_dir / INIT_CHECKPOINT)),
        }
    )
    return record


def _polarity_record(config: RunConfig, data: RunData) -> dict[str, Any]:
    """The training polarity, which ``voxuda segment`` and ``voxuda evaluate`` map their input to."""
    from voxuda.segment.polarity import polarity_record

    return polarity_record(config.data.canonical_polarity, data.source_train.meta or (),
                           data.target_train.meta or ())


def data_record(data: RunData, *, sees_target: bool = True) -> dict[str, Any]:
    """Voxel sizes (Å, after resizing to the box) the model was trained at; ``voxuda segment`` resamples
    tomograms to ``voxel_size``: the target's (the domain the model was adapted to), or the source's for a
    method that never sees target volumes (source-only)."""

    def median_voxel(split: Any) -> float | None:
        values = [float(m["voxel_size"]) for m in getattr(split, "meta", None) or []
                  if isinstance(m.get("voxel_size"), (int, float)) and m["voxel_size"] == m["voxel_size"]]
        return float(np.median(values)) if values else None

    source = median_voxel(data.source_train)
    target = median_voxel(data.target_train)
    model = (target or source) if sees_target else (source or target)
    return {"source_voxel_size": source, "target_voxel_size": target, "voxel_size": model}

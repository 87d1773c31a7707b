"""``segment_tomogram``: a whole tomogram in, an int8 label map (and optionally foreground probabilities) out.

The pipeline, each stage streaming in z so memory is bounded by one band of planes whatever the tomogram size:

    memory-mapped MRC -> [resample to the model's voxel size] -> windows -> polarity (the input's
    ``polarity`` mapped to the run's canonical one, voxuda.segment.polarity), normalisation,
    [input alignment] -> [input denoiser] -> predictor -> Gaussian-weighted blending -> [resample back]
    -> labels / probabilities written plane band by plane band to temporary files, renamed into place at
    the very end.

Everything that can be checked is checked before the first output byte is written (output folder, patch size
versus the network's down-sampling factor, the model, the input's dimensionality), and any failure later
deletes the temporary files, so an error never leaves a partial output.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import nn

from voxuda.backbones.common import input_divisor
from voxuda.errors import VoxudaError
from voxuda.segment.errors import SegmentError
from voxuda.segment.model import LoadedModel, load_model
from voxuda.segment.polarity import InputPolarity, resolve_input_polarity
from voxuda.segment.preprocess import Preprocessing
from voxuda.segment.sliding import count_windows, sliding_window
from voxuda.segment.source import MRCSource, PlaneSource, ResampledSource, resampled_shape
from voxuda.segment.writer import MRCPlaneWriter, PlaneSink, ResampleSink, SegmentationSink

__all__ = ["SegmentResult", "segment_tomogram"]

#: relative voxel-size difference below which no resampling is done (header rounding noise)
VOXEL_TOLERANCE = 0.01


@attrs.define
class SegmentResult:
    """What :func:`segment_tomogram` wrote and how fast."""

    labels: Path
    probabilities: Path | None
    shape: tuple[int, int, int]
    working_shape: tuple[int, int, int]
    windows: int
    seconds: float
    notes: list[str] = attrs.field(factory=list)
    #: the network that predicted (the method's reported one, e.g. "teacher") and the checkpoint it came from
    network: str = ""
    checkpoint: Path | None = None

    @property
    def voxels_per_second(self) -> float:
        return float(np.prod(self.shape)) / max(self.seconds, 1e-9)


def _check_output(path: Path, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise SegmentError(f"{path}: {what} path is a folder; give a file name such as {path / 'labels.mrc'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SegmentError(f"{path}: output folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise SegmentError(f"{path}: output folder {folder} is not writable")
    return path


def _resolve_model(model_or_run: Any, device: torch.device) -> LoadedModel:
    if isinstance(model_or_run, LoadedModel):
        model_or_run.predictor.to(device).eval()
        return model_or_run
    if isinstance(model_or_run, nn.Module):
        return LoadedModel(predictor=model_or_run.to(device).eval(), num_classes=0,
                           divisor=input_divisor(model_or_run))
    if callable(model_or_run) and not isinstance(model_or_run, (str, os.PathLike)):
        return LoadedModel(predictor=model_or_run, num_classes=0)
    return load_model(model_or_run, device)


def _build_denoiser(name: Any, overrides: Mapping[str, Any], model: LoadedModel) -> Any:
    """The input denoiser: explicit name/ref/callable, else the run's ``evaluation.input_denoiser``; ``None``
    for plain identity (:func:`voxuda.denoisers.build_input_denoiser`)."""
    if callable(name):
        return name
    from voxuda.denoisers import build_input_denoiser, input_denoiser_ref

    if name is None:
        evaluation = model.config.get("evaluation")
        evaluation = evaluation if isinstance(evaluation, dict) else {}
        name = evaluation.get("input_denoiser") or "identity"
        if overrides and input_denoiser_ref(name).name == "identity":
            raise SegmentError("--set input_denoiser.* given but no --input-denoiser named")
    return build_input_denoiser(name, overrides)


def _build_aligner(name: Any, overrides: Mapping[str, Any], model: LoadedModel, normalization: str) -> Any:
    """The input aligner: explicit name/ref/callable, else the run's ``data.alignment`` as recorded.

    An aligner with fitted statistics (``spectrum_match``) can only use the statistics the run recorded, so it
    is refused for a run trained with another aligner: its target statistics would have to come from training
    data this command never sees.
    """
    if callable(name):
        return name
    from voxuda.align import build_aligner, is_identity
    from voxuda.api import resolved_config
    from voxuda.config import apply_overrides, component_ref

    recorded = model.alignment
    if name is None:
        if overrides:
            raise SegmentError("--set alignment.* given but no --alignment named")
        data_cfg = model.config.get("data")
        trained = data_cfg.get("alignment") if isinstance(data_cfg, dict) else None
        name = recorded["aligner"] if recorded is not None else trained
    if name is None:
        return None
    ref = component_ref(name)
    if overrides:
        ref = component_ref({"name": ref.name, **apply_overrides(dict(ref.params), dict(overrides))})
    if is_identity(ref):
        return None
    try:
        aligner = build_aligner(ref, normalization)  # type: ignore[arg-type]
        wanted = resolved_config("aligner", ref)
    except VoxudaError as exc:
        raise SegmentError(f"--alignment: {exc}") from exc
    if aligner.needs_fit:
        if recorded is None or recorded.get("aligner") != wanted:
            trained = (recorded or {}).get("aligner", {"name": "none"})
            raise SegmentError(
                f"--alignment {ref.name}: needs statistics fitted on the training data, and the run records "
                f"none for it (trained with {trained}); use --alignment detrend or none, or a run trained "
                f"with data.alignment = {ref.name!r}"
            )
        try:
            aligner.load_state(recorded.get("state") or {})
        except ValueError as exc:
            raise SegmentError(f"{model.run_dir}: run.json alignment cannot be restored ({exc})") from exc
    return aligner


def segment_tomogram(
    model_or_run: Any,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    probabilities: str | os.PathLike[str] | None = None,
    patch: int = 32,
    overlap: float = 0.5,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    input_denoiser: Any = None,
    denoiser_params: Mapping[str, Any] | None = None,
    alignment: Any = None,
    alignment_params: Mapping[str, Any] | None = None,
    invert: bool = False,
    polarity: str | None = None,
    normalization: str | None = None,
    scope: str = "patch",
    model_voxel_size: float | None = None,
    resample: bool = True,
    importance: str = "gaussian",
    voxel_size: float | None = None,
    progress: bool = True,
    log: Callable[[str], object] | None = None,
) -> SegmentResult:
    """Segment the MRC tomogram ``input_path`` and write an int8 label MRC to ``output_path``.

    ``model_or_run`` is a run folder, a checkpoint file, a :class:`~voxuda.segment.model.LoadedModel` or a
    predictor module (``(N, 1, p, p, p)`` -> logits). ``probabilities`` optionally names a float32 MRC of the
    foreground probability. ``normalization`` defaults to the run's ``[data] normalization`` (z-score for a
    bare module); ``scope`` is ``patch`` (default, like training subtomograms) or ``tomogram``.
    ``alignment`` (a name, ref table or callable; default: the run's ``data.alignment`` with the statistics in
    its ``run.json``, ``"none"`` to switch it off) is applied to every normalised window as the target domain.
    ``polarity`` is the input's protein contrast (``dark``, the default, ``bright`` or ``unknown``), mapped to
    the run's ``canonical_polarity`` as training mapped its volumes; ``invert`` is the manual override.
    ``model_voxel_size`` (Å) overrides the run's recorded voxel size; with ``resample`` the tomogram is
    resampled to it and the result back to the tomogram's grid. ``voxel_size`` (Å) replaces a wrong header
    pixel size of the input (outputs carry it). Outputs keep the input's shape, voxel size and origin. See
    docs/segment.md.
    """
    started = time.perf_counter()
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if log is not None:
            log(message)

    out = _check_output(Path(output_path), "output")
    prob_path = _check_output(Path(probabilities), "probabilities") if probabilities is not None else None
    inp = Path(input_path)
    resolved = {out.resolve(), *([prob_path.resolve()] if prob_path else [])}
    if inp.resolve() in resolved or (prob_path is not None and prob_path.resolve() == out.resolve()):
        raise SegmentError(f"{out}: output paths must differ from each other and from the input")
    if patch < 1 or not 0.0 <= overlap < 1.0 or batch_size < 1:
        raise SegmentError(
            f"need patch >= 1, 0 <= overlap < 1 and batch >= 1; got {patch}, {overlap}, {batch_size}"
        )
    torch_device = _resolve_device(device)
    model = _resolve_model(model_or_run, torch_device)
    if patch % model.divisor:
        raise SegmentError(f"patch {patch} must be a multiple of {model.divisor} (the network down-samples)")
    mapped = _input_polarity(polarity, invert, model)
    if mapped.note is not None:
        note(mapped.note)
    denoiser = _build_denoiser(input_denoiser, denoiser_params or {}, model)
    normalization = normalization or model.normalization
    aligner = _build_aligner(alignment, alignment_params or {}, model, normalization)

    source = MRCSource.open(inp, voxel_size=voxel_size)
    writers: list[MRCPlaneWriter] = []
    try:
        shape = source.shape
        info = source.info
        working: PlaneSource = source
        target_vs = model_voxel_size if model_voxel_size is not None else model.voxel_size
        if resample and target_vs is not None:
            if any(v <= 0 for v in info.voxel_size):
                note(f"{inp}: header voxel size is {info.voxel_size}; cannot resample to the model's "
                     f"{target_vs:g} Å, segmenting on the tomogram's own grid")
            elif any(abs(v / target_vs - 1.0) > VOXEL_TOLERANCE for v in info.voxel_size):
                new_shape = resampled_shape(shape, info.voxel_size, target_vs)
                working = ResampledSource(source, new_shape)
                note(f"resampling {shape} at {info.voxel_size} Å to {new_shape} at the model's "
                     f"{target_vs:g} Å and back")
        elif resample and target_vs is None and model.run_dir is not None:
            note("the run records no training voxel size; segmenting on the tomogram's own grid "
                 "(pass --model-voxel-size to resample)")
        prep = Preprocessing(
            normalization=normalization,  # type: ignore[arg-type]
            scope=scope,  # type: ignore[arg-type]
            invert=mapped.invert,
            denoiser=denoiser,
            aligner=aligner,
        )
        prep.prepare(working)
        windows = count_windows(working.shape, patch, overlap)
        writers.append(MRCPlaneWriter(out, shape, np.int8, info))
        if prob_path is not None:
            writers.append(MRCPlaneWriter(prob_path, shape, np.float32, info))
        sink: PlaneSink = SegmentationSink(writers[0], writers[1] if prob_path is not None else None)
        if working is not source:
            sink = ResampleSink(sink, working.shape[0], shape)
        bar = _progress_bar(windows, progress, inp.name)
        try:
            sliding_window(
                working, model.predictor, sink, patch=patch, overlap=overlap, batch_size=batch_size,
                device=torch_device, preprocess=prep, importance=importance,
                progress=bar.update if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
        for writer in writers:
            writer.commit()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    finally:
        source.close()
    return SegmentResult(
        labels=out, probabilities=prob_path, shape=shape, working_shape=working.shape,
        windows=windows, seconds=time.perf_counter() - started, notes=notes,
        network=model.network, checkpoint=model.checkpoint,
    )


def _resolve_device(device: str | torch.device) -> torch.device:
    """The trainer's device rule (``auto``: CUDA when available), errors as SegmentError naming --device."""
    from voxuda.engine.trainer import resolve_device

    try:
        return resolve_device(str(device), "--device")
    except VoxudaError as exc:
        raise SegmentError(str(exc)) from exc


def _input_polarity(polarity: str | None, invert: bool, model: LoadedModel) -> InputPolarity:
    """The polarity mapping of :mod:`voxuda.segment.polarity` for this model, errors as SegmentError."""
    try:
        return resolve_input_polarity(polarity, model.canonical_polarity, invert)
    except ValueError as exc:
        raise SegmentError(str(exc)) from exc


def _progress_bar(total: int, enabled: bool, name: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"segment {name}", unit="win", dynamic_ncols=True, file=sys.stderr)



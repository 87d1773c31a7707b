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

import copy
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

from voxuda.backbones.blocks import input_divisor
from voxuda.checks import prior_range_problem
from voxuda.engine.decision import SourceCalibration
from voxuda.engine.inference import with_test_time_orientations
from voxuda.engine.run_config import PRIOR_ESTIMATORS, TEST_TIME_ORIENTATIONS
from voxuda.errors import VoxudaError
from voxuda.segment.errors import SegmentError
from voxuda.segment.model import LoadedModel, load_model
from voxuda.segment.polarity import InputPolarity, resolve_input_polarity
from voxuda.segment.preprocess import Preprocessing
from voxuda.segment.prior_sink import PriorThresholdSink
from voxuda.segment.sliding import count_windows, sliding_window
from voxuda.segment.source import MRCSource, PlaneSource, ResampledSource, resampled_shape
from voxuda.segment.writer import MRCPlaneWriter, PlaneSink, ResampleSink, SegmentationSink

__all__ = ["SegmentOptions", "SegmentResult", "segment_tomogram"]

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
        # the caller's module stays where it is: one on another device is copied there, not moved (a CPU
        # model handed to segment on a GPU machine must still run on the CPU afterwards)
        here = next(iter(model_or_run.parameters()), None)
        on_device = here is None or here.device == device
        predictor = model_or_run if on_device else copy.deepcopy(model_or_run).to(device)
        return LoadedModel(predictor=predictor.eval(), num_classes=0, divisor=input_divisor(model_or_run))
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


@attrs.frozen(kw_only=True)
class SegmentOptions:
    """How to segment a tomogram: windows, device, input transforms, grid and reporting.

    Why a class: the options travel together from the command line (``voxuda segment``) or a script to
    :func:`segment_tomogram`, the same way :class:`~voxuda.bench.runner.BenchmarkOptions` carries a
    benchmark's; one typed, documented place instead of twenty keyword parameters. Values are checked by
    :func:`segment_tomogram` (one-line :class:`SegmentError` naming the option).
    """

    patch: int = 32  #: window side (voxels), a multiple of the network's down-sampling factor
    overlap: float = 0.5  #: fraction of a window shared with its neighbour, in [0, 1)
    batch_size: int = 4  #: windows per forward pass
    device: str | torch.device = "auto"  #: ``auto`` (CUDA when available), ``cpu``, ``cuda:N``
    #: test-time input denoiser: a name, ref table or callable; ``None``: the run's
    #: ``evaluation.input_denoiser``
    input_denoiser: Any = None
    denoiser_params: Mapping[str, Any] = attrs.field(factory=dict)  #: parameters of a named input denoiser
    #: input aligner: a name, ref table or callable; ``None``: the run's ``data.alignment`` with its
    #: recorded statistics
    alignment: Any = None
    alignment_params: Mapping[str, Any] = attrs.field(factory=dict)  #: parameters of a named aligner
    invert: bool = False  #: manual contrast inversion (overrides ``polarity``)
    polarity: str | None = None  #: the input's protein contrast: ``dark`` (default), ``bright``, ``unknown``
    normalization: str | None = None  #: ``None``: the run's ``[data] normalization``
    scope: str = "patch"  #: normalise each window (``patch``, like training) or the whole ``tomogram``
    model_voxel_size: float | None = None  #: Å; overrides the run's recorded training voxel size
    resample: bool = True  #: resample the tomogram to the model's voxel size and the result back
    importance: str = "gaussian"  #: how overlapping windows are blended
    voxel_size: float | None = None  #: Å; replaces a wrong header pixel size of the input
    #: ``(lo, hi)``: the user's foreground fraction range; labels by a foreground threshold calibrated on the
    #: tomogram itself (argmax's fraction clamped into the range, :mod:`voxuda.segment.prior_sink`)
    fg_prior: tuple[float, float] | None = None
    #: ``em``: aim that threshold at a label-free EM estimate of the tomogram's foreground fraction
    #: (:mod:`voxuda.engine.decision`), starting from the network's mean ``p_fg`` on held-out source
    #: (``source_soft``, else measured on the run's source val split); ``em_calibrated``: the same after
    #: calibrating the probabilities on the run's labelled source val split; ``none``: off
    prior_estimate: str = "none"
    source_soft: float | None = None  #: the network's mean ``p_fg`` on held-out source (``prior_estimate``)
    #: test-time orientation average (``none``, ``wedge``, ``flips``); ``None``: the run's ``evaluation.tta``
    tta: str | None = None
    progress: bool = True  #: a tqdm bar on stderr
    log: Callable[[str], object] | None = None  #: receives each note (resampling, polarity) as it is made


def segment_tomogram(
    model_or_run: Any,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    options: SegmentOptions | None = None,
    *,
    probabilities: str | os.PathLike[str] | None = None,
    **changes: Any,
) -> SegmentResult:
    """Segment the MRC tomogram ``input_path`` and write an int8 label MRC to ``output_path``.

    ``model_or_run`` is a run folder, a checkpoint file, a :class:`~voxuda.segment.model.LoadedModel` or a
    predictor module (``(N, 1, p, p, p)`` -> logits). ``probabilities`` optionally names a float32 MRC of
    the foreground probability. ``options`` (:class:`SegmentOptions`) says how; keyword ``changes``
    replace single options (``segment_tomogram(run, "t.mrc", "l.mrc", patch=64)``). Normalisation defaults
    to the run's ``[data] normalization`` (z-score for a bare module); the aligner (default: the run's
    ``data.alignment`` with the statistics in its ``run.json``, ``"none"`` to switch it off) is applied to
    every normalised window as the target domain; the input's polarity is mapped to the run's
    ``canonical_polarity`` as training mapped its volumes. With ``resample`` the tomogram is resampled to
    the model's voxel size and the result back to the tomogram's grid. Outputs keep the input's shape,
    voxel size and origin. See docs/segment.md.
    """
    options = _with_changes(options or SegmentOptions(), changes)
    patch, overlap, batch_size = options.patch, options.overlap, options.batch_size
    log = options.log
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
    if options.fg_prior is not None:
        problem = prior_range_problem(options.fg_prior) if options.fg_prior else "must not be empty"
        if problem is not None:
            shown = " ".join(f"{v:g}" for v in options.fg_prior)
            raise SegmentError(f"fg_prior {shown}: {problem}")
    if options.prior_estimate not in PRIOR_ESTIMATORS:
        raise SegmentError(f"prior_estimate {options.prior_estimate!r}: must be one of "
                           f"{', '.join(PRIOR_ESTIMATORS)}")
    estimating = options.prior_estimate != "none"
    if estimating and options.fg_prior is not None:
        raise SegmentError("fg_prior and prior_estimate both set the foreground fraction; give one")
    if options.source_soft is not None and not (options.prior_estimate == "em"
                                                and 0.0 < options.source_soft < 1.0):
        raise SegmentError(f"source_soft {options.source_soft:g}: needs prior_estimate em and a value "
                           "strictly between 0 and 1 (the network's mean p_fg on held-out source)")
    if patch < 1 or not 0.0 <= overlap < 1.0 or batch_size < 1:
        raise SegmentError(
            f"need patch >= 1, 0 <= overlap < 1 and batch >= 1; got {patch}, {overlap}, {batch_size}"
        )
    torch_device = _resolve_device(options.device)
    model = _resolve_model(model_or_run, torch_device)
    run_tta = model.config.get("evaluation", {}).get("tta", "none")  # a bare module's config is empty
    orientations = options.tta if options.tta is not None else run_tta
    if orientations not in TEST_TIME_ORIENTATIONS:
        raise SegmentError(f"tta {orientations!r}: must be one of {', '.join(TEST_TIME_ORIENTATIONS)}")
    predictor = with_test_time_orientations(model.predictor, orientations)
    if patch % model.divisor:
        raise SegmentError(f"patch {patch} must be a multiple of {model.divisor} (the network down-samples)")
    mapped = _input_polarity(options.polarity, options.invert, model)
    if mapped.note is not None:
        note(mapped.note)
    denoiser = _build_denoiser(options.input_denoiser, options.denoiser_params or {}, model)
    normalization = options.normalization or model.normalization
    aligner = _build_aligner(options.alignment, options.alignment_params or {}, model, normalization)
    calibration: SourceCalibration | None = None
    if options.source_soft is not None:
        calibration = SourceCalibration(source_soft=options.source_soft)
    elif estimating:
        calibration = _source_calibration(model, predictor, denoiser, torch_device, options.prior_estimate)

    source = MRCSource.open(inp, voxel_size=options.voxel_size)
    writers: list[MRCPlaneWriter] = []
    prior_sink: PriorThresholdSink | None = None
    try:
        shape = source.shape
        info = source.info
        working: PlaneSource = source
        target_vs = options.model_voxel_size if options.model_voxel_size is not None else model.voxel_size
        if options.resample and target_vs is not None:
            if any(v <= 0 for v in info.voxel_size):
                note(f"{inp}: header voxel size is {info.voxel_size}; cannot resample to the model's "
                     f"{target_vs:g} Å, segmenting on the tomogram's own grid")
            elif any(abs(v / target_vs - 1.0) > VOXEL_TOLERANCE for v in info.voxel_size):
                new_shape = resampled_shape(shape, info.voxel_size, target_vs)
                working = ResampledSource(source, new_shape)
                note(f"resampling {shape} at {info.voxel_size} Å to {new_shape} at the model's "
                     f"{target_vs:g} Å and back")
        elif options.resample and target_vs is None and model.run_dir is not None:
            note("the run records no training voxel size; segmenting on the tomogram's own grid "
                 "(pass --model-voxel-size to resample)")
        prep = Preprocessing(
            normalization=normalization,  # type: ignore[arg-type]
            scope=options.scope,  # type: ignore[arg-type]
            invert=mapped.invert,
            denoiser=denoiser,
            aligner=aligner,
        )
        prep.prepare(working)
        windows = count_windows(working.shape, patch, overlap)
        writers.append(MRCPlaneWriter(out, shape, np.int8, info))
        if prob_path is not None:
            writers.append(MRCPlaneWriter(prob_path, shape, np.float32, info))
        prob_writer = writers[1] if prob_path is not None else None
        if options.fg_prior is not None or calibration is not None:
            prior_sink = PriorThresholdSink(writers[0], prob_writer, options.fg_prior, source=calibration,
                                            method=options.prior_estimate)
            sink: PlaneSink = prior_sink
        else:
            sink = SegmentationSink(writers[0], prob_writer)
        if working is not source:
            sink = ResampleSink(sink, working.shape[0], shape)
        bar = _progress_bar(windows, options.progress, inp.name)
        try:
            sliding_window(
                working, predictor, sink, patch=patch, overlap=overlap, batch_size=batch_size,
                device=torch_device, preprocess=prep, importance=options.importance,
                progress=bar.update if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
        if prior_sink is not None:
            note(prior_sink.note())
        for writer in writers:
            writer.commit()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    finally:
        source.close()
        if prior_sink is not None:
            prior_sink.close()
    return SegmentResult(
        labels=out, probabilities=prob_path, shape=shape, working_shape=working.shape,
        windows=windows, seconds=time.perf_counter() - started, notes=notes,
        network=model.network, checkpoint=model.checkpoint,
    )


def _with_changes(options: SegmentOptions, changes: Mapping[str, Any]) -> SegmentOptions:
    """``options`` with keyword ``changes`` applied; an unknown name is a one-line error listing them."""
    unknown = sorted(set(changes) - {field.name for field in attrs.fields(SegmentOptions)})
    if unknown:
        known = ", ".join(field.name for field in attrs.fields(SegmentOptions))
        raise SegmentError(f"unknown segment option {unknown[0]!r}; options: {known}")
    return attrs.evolve(options, **changes) if changes else options


def _source_calibration(model: LoadedModel, predictor: Any, denoiser: Any, device: torch.device,
                        method: str) -> SourceCalibration:
    """The network's posteriors on its run's held-out source split (aligned as the run recorded, through the
    same input denoiser; labels read for ``em_calibrated``), where the EM estimate starts; a one-line error
    when that cannot be measured."""
    from voxuda.engine.decision import source_calibration
    from voxuda.engine.evaluate import run_source_val
    from voxuda.engine.inference import make_input_transform

    remedy = "pass --source-soft (printed by voxuda evaluate --prior-estimate em)" if method == "em" else (
        "use --prior-estimate em with --source-soft")
    if model.run_dir is None:
        raise SegmentError(f"prior_estimate {method}: a bare network has no run whose held-out source "
                           f"measures its prior; pass a run folder or {remedy}")
    try:
        split = run_source_val(model.run_dir, with_labels=method == "em_calibrated")
        return source_calibration(predictor, split.volumes, split.labels, method=method, batch_size=8,
                                  device=device, input_transform=make_input_transform(denoiser))
    except (VoxudaError, ValueError, OSError) as exc:
        raise SegmentError(f"prior_estimate {method}: cannot measure the network's prior on the held-out "
                           f"source of {model.run_dir} ({exc}); {remedy}") from exc


def _resolve_device(device: str | torch.device) -> torch.device:
    """The trainer's device rule (``auto``: CUDA when available), errors as SegmentError naming --device."""
    from voxuda.engine.runtime import resolve_device

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



"""``voxuda segment RUN TOMOGRAM.mrc --out LABELS.mrc``: segment a whole tomogram with a trained model.

Heavy imports (torch) stay inside :func:`run` so that ``voxuda --help`` remains fast.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from voxuda.commands.options import (
    add_device_argument,
    add_output_argument,
    add_polarity_arguments,
    add_progress_argument,
)
from voxuda.engine.run_config import PRIOR_ESTIMATORS, TEST_TIME_ORIENTATIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("run", metavar="RUN_DIR_OR_CHECKPOINT", help="a training run folder or a .pt checkpoint")
    add("tomogram", metavar="TOMOGRAM.mrc", help="the tomogram to segment (any MRC mode)")
    add_output_argument(parser, "LABELS.mrc", "int8 label map to write (same shape, voxel size and origin as "
                                              "the input)")
    add("--probabilities", metavar="PROB.mrc", help="also write float32 foreground probabilities")
    add("--fg-prior", type=float, nargs=2, metavar=("LO", "HI"),
        help="the foreground fraction you expect (e.g. 0.03 0.15 for a crowded cytoplasm): label by a "
             "foreground threshold calibrated on this tomogram so that the fraction called is argmax's, "
             "clamped into [LO, HI] (docs/segment.md)")
    add("--prior-estimate", choices=PRIOR_ESTIMATORS, default="none",
        help="em: the same threshold aimed at a label-free estimate of this tomogram's foreground fraction "
             "(EM re-estimation of the prior from the network's probabilities, for a sample more crowded "
             "than the training data; docs/segment.md); em_calibrated: the same after calibrating them on "
             "the run's labelled held-out source; not with --fg-prior")
    add("--source-soft", type=float, metavar="P",
        help="with --prior-estimate em: the network's mean foreground probability on held-out source "
             "(default: measured on the run's source val split; 'voxuda evaluate --prior-estimate em' prints "
             "it)")
    add("--patch", type=int, default=32, help="window edge in voxels (default 32)")
    add("--overlap", type=float, default=0.5, help="fraction of overlap between windows (default 0.5)")
    add("--batch", type=int, default=4, help="windows per forward pass (default 4)")
    add_device_argument(parser)
    add("--input-denoiser", metavar="NAME",
        help="registered denoiser applied to each normalised window (default: the run's)")
    add("--tta", choices=TEST_TIME_ORIENTATIONS,
        help="average each window's probabilities over orientations: wedge (4 that keep any missing wedge) "
             "or flips (8, symmetric tilt ranges only); default: the run's evaluation.tta")
    add("--alignment", metavar="NAME",
        help="registered input aligner applied to each normalised window as the target domain (default: the "
             "run's data.alignment with its recorded statistics; 'none' switches it off)")
    add("--set", dest="overrides", action="append", default=[], metavar="input_denoiser.KEY=VALUE",
        help="parameter of the input denoiser or aligner, e.g. --set input_denoiser.sigma=1 or "
             "--set alignment.order=2 (repeatable)")
    add_polarity_arguments(parser)
    add("--normalization", choices=["zscore", "minmax", "none"], help="override the run's normalisation")
    add("--scope", choices=["patch", "tomogram"], default="patch",
        help="normalise each window (default, like training subtomograms) or the whole tomogram")
    add("--model-voxel-size", type=float, metavar="ANGSTROM",
        help="voxel size the model was trained at (overrides the run's record)")
    add("--no-resample", action="store_true",
        help="segment on the tomogram's own grid even if the voxel sizes differ")
    add_progress_argument(parser)
    add_voxel_size_argument(parser)


def add_voxel_size_argument(parser: argparse.ArgumentParser) -> None:
    """``--voxel-size``: the input's pixel size when its header is wrong (passed to the MRC reader)."""
    parser.add_argument("--voxel-size", type=float, metavar="ANGSTROM",
                        help="pixel size of the tomogram in Å (overrides its header; outputs carry it)")


def run(args: argparse.Namespace) -> int:
    from voxuda.config import component_overrides

    params = component_overrides(args.overrides, ("input_denoiser", "alignment"), "segment")
    _check_sizes(args)
    with _locked_outputs(args):
        result = _segment(args, params)
    written = f"{result.labels}" + (f" and {result.probabilities}" if result.probabilities else "")
    model = f" with the {result.network} network of {result.checkpoint}" if result.network else ""
    print(f"segmented {result.shape}{model} in {result.seconds:.1f} s ({result.voxels_per_second / 1e6:.2f} "
          f"Mvox/s, {result.windows} windows): wrote {written}")
    return 0


def _check_sizes(args: argparse.Namespace) -> None:
    """Numbers that must be finite and positive, and windows that must fit in memory, before any work."""
    import math

    from voxuda.resources import check_fits
    from voxuda.segment.errors import SegmentError

    size = args.model_voxel_size
    if size is not None and not (math.isfinite(size) and size > 0):
        raise SegmentError(f"--model-voxel-size {size}: must be a positive voxel size in Å (e.g. 10.0)")
    if args.patch < 1 or args.batch < 1:
        raise SegmentError(f"--patch {args.patch} / --batch {args.batch}: both must be at least 1")
    # each window batch: the input (float32) and two class probabilities (float32), at the least
    check_fits(args.batch * float(args.patch) ** 3 * 4 * 3, device=args.device,
               what=f"--patch {args.patch} with --batch {args.batch}",
               detail=f"{args.batch} windows of {args.patch}^3 voxels, input and probabilities",
               hint="lower --patch (e.g. 64) or --batch")


@contextlib.contextmanager
def _locked_outputs(args: argparse.Namespace) -> Iterator[None]:
    """Lock every output file (a second segment into the same file stops with one line) and delete the
    temporary files that a killed segment left beside them (their PID is dead). A missing output folder is
    left for :func:`segment_tomogram` to report."""
    from pathlib import Path

    from voxuda.atomic import remove_stale_temporaries
    from voxuda.locks import output_lock
    from voxuda.segment.prior_sink import scratch_names

    with contextlib.ExitStack() as stack:
        for output in (args.output, args.probabilities):
            path = Path(output) if output else None
            if path is not None and path.parent.is_dir():
                stack.enter_context(output_lock(path, command="voxuda segment"))
                scratch = scratch_names(path.name) if output == args.output else []
                remove_stale_temporaries(path.parent, names=[path.name, *scratch])
        yield


def _segment(args: argparse.Namespace, params: dict[str, dict[str, object]]) -> Any:
    from voxuda.segment import SegmentOptions, segment_tomogram

    options = SegmentOptions(
        patch=args.patch,
        overlap=args.overlap,
        batch_size=args.batch,
        device=args.device,
        input_denoiser=args.input_denoiser,
        tta=args.tta,
        denoiser_params=params["input_denoiser"],
        alignment=args.alignment,
        alignment_params=params["alignment"],
        invert=args.invert,
        polarity=args.polarity,
        normalization=args.normalization,
        scope=args.scope,
        model_voxel_size=args.model_voxel_size,
        resample=not args.no_resample,
        voxel_size=args.voxel_size,
        fg_prior=tuple(args.fg_prior) if args.fg_prior else None,
        prior_estimate=args.prior_estimate,
        source_soft=args.source_soft,
        progress=not args.no_progress,
        log=lambda message: print(f"voxuda: note: {message}", file=sys.stderr),
    )
    return segment_tomogram(args.run, args.tomogram, args.output, options, probabilities=args.probabilities)

"""``voxuda evaluate RUN_DIR [--split test] [--checkpoint best|last] [--input-denoiser NAME] [--set ...]
[--alignment NAME] [--polarity dark|bright|unknown | --invert] [--device auto]``: Dice/IoU of a trained run
on a target split, written to ``RUN_DIR/eval_<...>.json``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from voxuda.commands.options import add_device_argument, add_polarity_arguments
from voxuda.engine.run_config import PRIOR_ESTIMATORS, TEST_TIME_ORIENTATIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="run folder written by 'voxuda train'")
    parser.add_argument("--split", default="test", help="target split to evaluate (default: test)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="best (selected by the run's criterion; last when it selected none) or last")
    parser.add_argument("--input-denoiser", dest="input_denoiser",
                        help="test-time denoiser on the model input (default: evaluation.input_denoiser)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="input_denoiser.KEY=VALUE",
                        help="parameter of the input denoiser, e.g. --set input_denoiser.sigma=1")
    parser.add_argument("--alignment", metavar="NAME",
                        help="input aligner for the target split instead of the run's data.alignment (e.g. "
                             "detrend, spectrum_match: fitted on the unlabelled train splits)")
    parser.add_argument("--fg-prior", type=float, nargs=2, metavar=("LO", "HI"),
                        help="the foreground fraction range you expect: label by a foreground threshold "
                             "calibrated on the unlabelled target train split so that the fraction called "
                             "is argmax's clamped into [LO, HI] (default: the run's evaluation.fg_prior)")
    parser.add_argument("--source-prior", action="store_true", default=None,
                        help="the same threshold aimed at the labelled source train split's foreground "
                             "fraction (for a target as crowded as the source; default: the run's "
                             "evaluation.source_prior)")
    parser.add_argument("--prior-estimate", choices=PRIOR_ESTIMATORS, default=None,
                        help="em: the same threshold aimed at a label-free estimate of the target's "
                             "foreground fraction (EM re-estimation of the prior from the network's "
                             "probabilities, for a target more crowded than the source); em_calibrated: the "
                             "same after calibrating them on the labelled held-out source; none: argmax; "
                             "default: the run's evaluation.prior_estimate")
    parser.add_argument("--tta", choices=TEST_TIME_ORIENTATIONS, default=None,
                        help="average the network's probabilities over orientations of each volume: wedge "
                             "(4 that keep any missing wedge) or flips (8, symmetric tilt ranges only); "
                             "default: the run's evaluation.tta")
    add_polarity_arguments(
        parser,
        polarity_help="protein contrast of every evaluated volume instead of the manifest's polarity column "
                      "(default: the manifest's, as the run was trained); mapped to the run's "
                      "canonical_polarity as training did, with one line printed when volumes are inverted",
        invert_help="manual override: invert the model input after the run's preprocessing (polarity "
                    "check); not together with --polarity")
    add_device_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")


def run(args: argparse.Namespace) -> int:
    from voxuda.engine.evaluate import evaluate_run
    from voxuda.errors import ConfigError

    if args.invert and args.polarity is not None:
        raise ConfigError("--invert and --polarity both given; --invert overrides the polarity mapping, so "
                          "pass only one of them")
    with _locked_run(args.run_dir):
        result = evaluate_run(
            args.run_dir, split=args.split, checkpoint=args.checkpoint, input_denoiser=args.input_denoiser,
            denoiser_overrides=args.overrides, invert=args.invert, alignment=args.alignment,
            polarity=args.polarity, device=args.device, fg_prior=args.fg_prior,
            source_prior=args.source_prior, prior_estimate=args.prior_estimate, tta=args.tta,
        )
    polarity = result["polarity"]
    if polarity["inverted"]:
        print(f"voxuda: note: inverted the contrast of {polarity['inverted']} of {polarity['volumes']} "
              f"volumes: input polarity ({polarity['input']}) differs from the run's {polarity['canonical']} "
              f"(canonical_polarity)", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    overall = result["overall"]
    print(f"{result['method']} on {result['domain']}/{result['split']} ({result['checkpoint']['file']}, "
          f"step {result['checkpoint']['step']}, input {result['input_denoiser']['name']}, "
          f"alignment {result['alignment']['name']}"
          f"{', inverted' if result['inverted'] else ''})")
    decision = result["decision"]
    if decision["rule"] != "argmax":
        threshold = decision["threshold"]
        rule = "argmax kept" if threshold is None else f"foreground threshold {threshold:.4f}"
        values = [f"{v:.6g}" for v in decision["fg_prior"]]
        print(f"  decision: fg_prior [{', '.join(values)}] ({decision['origin']}): argmax called "
              f"{100 * decision['argmax_fraction']:.2f} % of the target train split; {rule} "
              f"(voxuda segment --fg-prior {' '.join(values)} applies the same rule to a tomogram)")
        estimate = decision.get("estimate")
        if estimate is not None:
            print(f"  prior estimate ({estimate['method']}): {100 * estimate['estimate']:.2f} % from the "
                  f"network's mean p_fg {100 * estimate['target_soft']:.2f} % on the target and "
                  f"{100 * estimate['source_soft']:.2f} % on the held-out source, {estimate['iterations']} "
                  f"iterations{'' if estimate['converged'] else ' (NOT converged)'}"
                  + (f"; calibrated on the source: scale {estimate['scale']:.3f}, bias "
                     f"{estimate['bias']:+.3f}" if estimate["method"] == "em_calibrated" else ""))
    print(f"  overall: Dice {overall['dice_fg']:.4f}  IoU {overall['iou_fg']:.4f}  mean Dice "
          f"{overall['dice_mean']:.4f}  mean IoU {overall['iou_mean']:.4f}  per-volume Dice "
          f"{result['per_volume_dice_mean']:.4f}")
    for name, scores in result["per_macromolecule"].items():
        print(f"  {name}: Dice {scores['dice_fg']:.4f}  IoU {scores['iou_fg']:.4f}  "
              f"({scores['volumes']} volumes)")
    for flag in result["flags"]:
        print(f"  FLAG: {flag}")
    if result["selection"].get("label_leak"):
        print("  FLAG: checkpoint selected on target labels (label leak)")
    return 0


def _locked_run(run_dir: str) -> contextlib.AbstractContextManager[object]:
    """The run folder's lock (evaluate writes ``eval_<split>_<ckpt>.json`` into it): not while a ``train``
    or another ``evaluate`` writes there. A missing folder is left for :func:`evaluate_run` to report."""
    from pathlib import Path

    from voxuda.locks import output_lock

    if not Path(run_dir).is_dir():
        return contextlib.nullcontext()
    return output_lock(run_dir, command="voxuda evaluate")

"""``voxuda train --config FILE.toml [--set key=value ...] [--out RUN_DIR] [--resume]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="run config (TOML): seed, [data], [method], ...")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set trainer.steps=200 --set method.ema_momentum=0.999",
    )
    parser.add_argument("--out", help="run folder (default: runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")


def run(args: argparse.Namespace) -> int:
    from voxuda.engine.config import load_run_config
    from voxuda.engine.trainer import train
    from voxuda.locks import output_lock

    config = load_run_config(args.config, args.overrides)  # every value checked before anything is written
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    with output_lock(out, command="voxuda train"):  # a second train on this folder stops here, one line
        result = train(config, out, resume=args.resume)
    line = f"voxuda: trained {config.method.name} for {result.step} steps into {out}"
    if result.best_score is not None:
        line += f"; best {config.selection_ref.name if config.selection_ref else 'last'} score "
        line += f"{result.best_score:.4f} at step {result.best_step}"
    if result.evaluation is not None:
        overall = result.evaluation["overall"]
        line += f"; {config.evaluation.split} Dice {overall['dice_fg']:.4f} IoU {overall['iou_fg']:.4f}"
        flags = result.evaluation.get("flags") or []
        if flags:
            line += f" [{'; '.join(flags)}]"
    print(line)
    return 0

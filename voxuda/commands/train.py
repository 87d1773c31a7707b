"""``voxuda train --config FILE.toml [--set key=value ...] [--out RUN_DIR] [--resume] [--init-from RUN]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from voxuda.commands.options import add_progress_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="run config (TOML): seed, [data], [method], ...")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set trainer.steps=200 --set method.ema_momentum=0.999",
    )
    parser.add_argument("--out", help="run folder (default: runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument(
        "--init-from", dest="init_from", metavar="RUN",
        help="warm start from a finished run (its folder, taking best.pt else last.pt, or a .pt file): its "
             "network weights are copied by name and shape (a teacher starts from the student), the rest "
             "starts fresh; recorded as init_from in run.json (e.g. adapt a source-only model you trained)")
    parser.add_argument("--device", default=None,
                        help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default: the "
                             "config's trainer.device, auto unless set)")
    add_progress_argument(parser)


def command_overrides(args: argparse.Namespace) -> list[str]:
    """``--device`` and ``--no-progress`` as config overrides, after the user's ``--set`` items."""
    extra = [f"trainer.device={args.device}"] if args.device else []
    if args.no_progress:
        extra.append("trainer.progress=false")
    return [*args.overrides, *extra]


def parent_checkpoint(path: str | Path) -> Path:
    """The checkpoint ``--init-from`` names: a run folder's selected one (best.pt, else last.pt) or a file."""
    from voxuda.errors import ConfigError
    from voxuda.segment.errors import SegmentError
    from voxuda.segment.model import find_run_files

    try:
        return find_run_files(path)[1]
    except SegmentError as exc:
        raise ConfigError(f"--init-from: {exc}") from exc


def warm_start_run(config: Any, out: Path, parent: Path) -> None:
    """Create the run folder ``out`` at step 0 with the parent's weights copied in (the benchmark's warm
    start, :func:`voxuda.bench.executor.warm_start`) and the parent recorded in run.json as ``init_from``.

    The folder is built under a temporary name beside ``out`` and renamed into place only once complete, so
    a parent that does not fit (another backbone) leaves no half-initialised run behind.
    """
    import os
    import shutil

    from voxuda.bench.executor import warm_start
    from voxuda.engine import provenance
    from voxuda.engine.trainer import train
    from voxuda.errors import ConfigError
    from voxuda.jsonio import read_json

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--init-from is not supported under torchrun (every rank would stage its own "
                          "folder); run the warm-started training in one process")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: --init-from needs a new run folder; choose another --out (or --resume)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.init-{os.getpid()}"  # under out's lock; mkdir: the umask's mode
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        train(config, staging, resume=False, stop_after=0)
        info = warm_start(staging / "last.pt", parent, staging / "init.json")
        record = read_json(staging / "run.json")  # train() just wrote it
        record["init_from"] = info
        provenance.write_json_atomic(record, staging / "run.json")
        if out.exists():
            out.rmdir()  # empty (checked above)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def run(args: argparse.Namespace) -> int:
    from voxuda.engine.pipeline import train_and_evaluate
    from voxuda.engine.run_config import load_run_config
    from voxuda.errors import ConfigError
    from voxuda.locks import output_lock

    config = load_run_config(args.config, command_overrides(args))  # every value checked before any write
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    resume = args.resume
    with output_lock(out, command="voxuda train"):  # a second train on this folder stops here, one line
        if args.init_from and not resume:
            warm_start_run(config, out, parent_checkpoint(args.init_from))
            resume = True  # from the warm-started step-0 checkpoint
        elif args.init_from and not (out / "init.json").is_file():
            raise ConfigError(f"{out}: --resume --init-from, but this run was not warm-started (no "
                              "init.json); drop --init-from to resume it, or start a new --out")
        result = train_and_evaluate(config, out, resume=resume)
    line = f"voxuda: trained {config.method.name} for {result.step} steps into {out}"
    if args.init_from:
        line += f" (warm start from {args.init_from})"
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

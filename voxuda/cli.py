"""The ``voxuda`` command. Sub-commands live in ``voxuda.commands.*``; the table below is the only list.

Each command module provides ``add_arguments(parser)`` and ``run(args) -> int`` and keeps heavy imports
inside ``run`` so that ``voxuda --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from voxuda._version import __version__

#: command name -> (module, one-line help). Keep in one place: docs and tests read it.
COMMANDS: dict[str, tuple[str, str]] = {
    "plugins": ("voxuda.commands.plugins", "list every registered component and plugins that failed"),
    "describe": ("voxuda.commands.describe", "show a component's config fields, defaults and docs"),
    "simulate": ("voxuda.commands.simulate", "write the embedded synthetic UDA benchmark (MRC + manifest)"),
    "train": ("voxuda.commands.train", "train or adapt a model from a TOML config"),
    "evaluate": ("voxuda.commands.evaluate", "evaluate a run folder on a dataset split"),
    "benchmark": (
        "voxuda.commands.benchmark",
        "run a benchmark or ablation suite and write tables and plots",
    ),
    "segment": ("voxuda.commands.segment", "segment a whole tomogram MRC with a trained model"),
    "pick": ("voxuda.commands.pick", "particle positions (STAR/CSV) from a segmentation's components"),
    "extract": ("voxuda.commands.extract", "cut subtomograms at picks into a dataset (MRC + manifest.csv)"),
    "manifest": ("voxuda.commands.manifest", "write manifest.csv for the volume/label pairs in a folder"),
    "evaluate-tomogram": ("voxuda.commands.evaluate_tomogram", "Dice and pick precision/recall vs a truth"),
    "export": ("voxuda.commands.export", "write a run's predictor as TorchScript or ONNX"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxuda",
        description="Unsupervised domain adaptation for cryo-ET subtomogram segmentation (Vox-UDA).",
    )
    parser.add_argument("--version", action="version", version=f"voxuda {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error (for bug reports)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a command whose module is not part of this build
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from voxuda.errors import VoxudaError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("voxuda: interrupted", file=sys.stderr)
        return 130
    except (VoxudaError, OSError, ValueError) as exc:
        if args.traceback or os.environ.get("VOXUDA_TRACEBACK"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"voxuda: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

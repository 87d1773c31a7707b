"""The ``voxuda`` command. Sub-commands live in ``voxuda.commands.*``; the table below is the only list.

Each command module provides ``add_arguments(parser)`` and ``run(args) -> int`` and keeps heavy imports
inside ``run`` so that ``voxuda --help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Callable, Sequence

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


#: ``--traceback`` is accepted before and after the sub-command; the sub-command's copy must not reset it
_TRACEBACK_HELP = "show the full traceback of an error (for bug reports)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxuda",
        description="Unsupervised domain adaptation for cryo-ET subtomogram segmentation (Vox-UDA).",
    )
    parser.add_argument("--version", action="version", version=f"voxuda {__version__}")
    parser.add_argument("--traceback", action="store_true", help=_TRACEBACK_HELP)
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
        command_parser.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                                    help=_TRACEBACK_HELP)
        command_parser.set_defaults(_run=module.run)
    return parser


#: errno -> what to do, for write failures the user can fix
_OS_HINTS = {
    errno.ENOSPC: "free disk space (or choose another output folder) and rerun",
    errno.EDQUOT: "the disk quota is exhausted; free space or choose another output folder and rerun",
    errno.EACCES: "check the permissions of the path, or choose another output folder",
    errno.EPERM: "check the permissions of the path, or choose another output folder",
    errno.EROFS: "the file system is read-only; choose another output folder",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) and rerun",
}


def _is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, or CUDA's out-of-memory error, recognised by name (importing torch.cuda is not needed
    to report it, and ``torch.cuda.OutOfMemoryError`` may not exist in every torch build)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__) or (
        isinstance(exc, RuntimeError) and any(phrase in text for phrase in _OOM_PHRASES)
    )


#: how torch's allocators word a failed allocation in a plain RuntimeError (CUDA's, and the CPU's
#: "DefaultCPUAllocator: can't allocate memory" / "not enough memory")
_OOM_PHRASES = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def describe_error(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit status for an error the user can act on; ``None`` for a bug (which
    keeps its traceback). Exit 2: usage (an option, config value or input file); 1: runtime (memory, disk,
    divergence, a folder in use)."""
    from voxuda.errors import VoxudaError

    if isinstance(exc, VoxudaError):
        return _one_line(exc), int(getattr(exc, "exit_code", 2))
    if _is_out_of_memory(exc):
        first = _one_line(exc).split(". ")[0]
        return (f"out of memory ({type(exc).__name__}: {first}); lower trainer.batch_size / data.box "
                "(train), --batch / --patch (segment), or use a device with more memory"), 1
    if isinstance(exc, FloatingPointError):
        return (f"training diverged: {_one_line(exc)} (also try trainer.grad_clip, trainer.warmup or "
                "trainer.amp = false)"), 1
    if isinstance(exc, OSError):
        hint = _OS_HINTS.get(exc.errno or -1)
        message = _one_line(exc)
        return (f"{message}; {hint}" if hint else message), 1
    if isinstance(exc, ValueError):
        return _one_line(exc), 2
    return None


def script_main(name: str, entry: Callable[[list[str] | None], int],
                argv: Sequence[str] | None = None) -> int:
    """The entry of a script in ``scripts/``: ``entry(argv)``, with a user's error (a missing folder, a
    mistyped path, a bad option value) printed as one line ``<name>: <message>`` and the exit status the
    ``voxuda`` command gives it (:func:`describe_error`), not a traceback; a bug keeps its traceback."""
    try:
        return entry(None if argv is None else list(argv))
    except Exception as exc:
        described = describe_error(exc)
        if described is None:
            raise
        message, code = described
        print(f"{name}: {message}", file=sys.stderr)
        return code


def main(argv: Sequence[str] | None = None) -> int:
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
    except Exception as exc:
        described = describe_error(exc)
        if described is None or args.traceback or os.environ.get("VOXUDA_TRACEBACK"):
            raise
        message, code = described
        print(f"voxuda: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Which voxuda files one training step enters, in order, and how often the step moves between files.

Why: docs/architecture.md states the files one Vox-UDA step passes through. Counted by hand that number goes
stale with every refactor; this script measures it on the installed code, so the page can quote a number
with the command that produced it, and the same command on an older checkout gives the "before".

How: a tiny run (U-Net 4-8-8-8 with four taps, 16^3 volumes from :func:`voxuda.testing.tiny_run_data`, the
paper-faithful ``vox_uda`` unless ``--method`` says otherwise) trains through the real trainer; its second
step (the first builds caches and compiles kernels) runs under :func:`sys.setprofile`. Each Python call and
return whose innermost voxuda frame lies in another file than before counts as one move; the files are
listed in the order they are first entered. Frames of other packages (torch, numba) count as the voxuda
file that called them, so a call through torch's module machinery into a voxuda ``forward`` is one move from
the caller's file to the callee's.

Usage::

    python scripts/step_trace.py                      # vox_uda, the list and the counts
    python scripts/step_trace.py --method mean_teacher --json trace.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any


def trace_step(method: str = "vox_uda", backend: str = "torch") -> dict[str, Any]:
    """Train ``method`` for two steps on tiny data and trace the second; returns files, order and moves."""
    import voxuda
    from voxuda.engine import trainer as trainer_module
    try:
        from voxuda.engine.run_config import run_config_from_dict
    except ImportError:  # checkouts before engine/config.py was renamed (to measure the "before")
        from voxuda.engine.config import run_config_from_dict  # type: ignore[no-redef]
    from voxuda.testing import tiny_run_data

    package = Path(voxuda.__file__).resolve().parent
    root = package.parent
    table: dict[str, Any] = {"name": method, "backbone": {"name": "unet3d", "widths": [4, 8, 8, 8]}}
    if method in ("vox_uda", "mean_teacher"):
        table["teacher_denoiser"] = {"name": "improved_bilateral", "backend": backend}
    sequence: list[str] = []
    calls = {"n": 0}
    original = trainer_module._Trainer._one_step

    def innermost_voxuda(frame: FrameType | None) -> str | None:
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith(str(package)):
                return str(Path(name).resolve().relative_to(root))
            frame = frame.f_back
        return None

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if event not in ("call", "return"):
            return
        where = innermost_voxuda(frame if event == "call" else frame.f_back)
        if where is not None and (not sequence or sequence[-1] != where):
            sequence.append(where)

    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] != 2:
            return original(self, *args, **kwargs)
        sys.setprofile(profile)
        try:
            return original(self, *args, **kwargs)
        finally:
            sys.setprofile(None)

    trainer_module._Trainer._one_step = traced  # type: ignore[method-assign]
    try:
        config = run_config_from_dict({
            "seed": 0,
            "method": table,
            "data": {"root": "unused", "box": 16},
            "trainer": {"steps": 2, "batch_size": 2, "progress": False, "num_threads": 1},
            "evaluation": {"batch_size": 2, "selection": "last", "split": ""},
        })
        with tempfile.TemporaryDirectory() as tmp:
            trainer_module.train(config, Path(tmp) / "run", data=tiny_run_data(16))
    finally:
        trainer_module._Trainer._one_step = original  # type: ignore[method-assign]
    first_seen = list(dict.fromkeys(sequence))
    return {"method": method, "files": first_seen, "n_files": len(first_seen),
            "moves": max(len(sequence) - 1, 0), "visits": {f: sequence.count(f) for f in first_seen}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="vox_uda", help="a built-in method (default: vox_uda)")
    parser.add_argument("--backend", default="torch", help="op backend of the teacher's bilateral filter")
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    # a built-in step needs no plugin; set here, not at import, so importing this module changes nothing
    os.environ.setdefault("VOXUDA_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = trace_step(args.method, args.backend)
    for i, name in enumerate(result["files"], 1):
        print(f"{i:3d}  {name}  (entered {result['visits'][name]}x)")
    print(f"{result['method']}: {result['n_files']} files, {result['moves']} moves between files")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    from voxuda.cli import script_main

    raise SystemExit(script_main("step_trace", main))  # one-line user errors

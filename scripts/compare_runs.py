"""Two training runs compared weight by weight: bit-identical or not, how far apart, and on what numerics.

Why: with the same code, data, seed and settings a run retrained on another machine can end elsewhere
(docs/training.md, "Reproducibility"). This says whether two run folders hold the same weights, how far
apart they are, and what each ran on (``run.json``'s ``numerics``), so that a retrained number that differs
can be traced to the machine or not.

    python scripts/compare_runs.py RUN_A RUN_B [--checkpoint last.pt]

Compared: the method's floating-point tensors in the checkpoint (student, teacher, discriminator; not the
optimiser or random states). Printed: how many are bit-identical, the largest absolute difference and
where, ``||a - b|| / ||a||`` over them all (the relative drift of :mod:`voxuda.engine.drift`, with run A as
the start), and each run's test Dice where ``eval_test_best.json`` holds it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voxuda.engine.checkpoint import load_checkpoint
from voxuda.engine.drift import relative_drift
from voxuda.engine.provenance import numerics_label
from voxuda.errors import ConfigError
from voxuda.jsonio import read_json


def _method_state(run: Path, checkpoint: str) -> dict[str, Any]:
    path = run / checkpoint if run.is_dir() else run
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint; give a run folder holding {checkpoint} "
                          "(or a .pt file)")
    return {key: value for key, value in load_checkpoint(path)["method"].items() if value.is_floating_point()}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per-tensor comparison of two method states (the keys both hold with the same shape)."""
    import torch

    shared = [k for k in a if k in b and tuple(a[k].shape) == tuple(b[k].shape)]
    if not shared:
        raise ConfigError("the two checkpoints share no tensor of the same name and shape: "
                          "not the same model")
    identical = [k for k in shared if torch.equal(a[k], b[k])]
    largest, where = 0.0, ""
    for key in shared:
        diff = float((a[key].double() - b[key].double()).abs().max()) if a[key].numel() else 0.0
        if diff > largest:
            largest, where = diff, key
    return {"tensors": len(shared), "identical": len(identical),
            "only_in_one": len(set(a) ^ set(b)), "max_abs": largest, "max_where": where,
            "relative": relative_drift({k: b[k] for k in shared}, {k: a[k] for k in shared})}


def _run_lines(tag: str, run: Path) -> list[str]:
    folder = run if run.is_dir() else run.parent
    record = read_json(folder / "run.json", default={})
    sessions = [record.get("numerics")] + [s.get("numerics") for s in record.get("resumed", [])
                                           if isinstance(s, dict) and s.get("numerics")]
    dice = read_json(folder / "eval_test_best.json", default={}).get("per_volume_dice_mean")
    dice_text = f", test Dice {dice:.4f}" if isinstance(dice, (int, float)) else ""
    return [f"{tag}: {run} ({' then '.join(numerics_label(n) for n in sessions)}{dice_text})"]


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("run_a", type=Path, help="a run folder (or a checkpoint file)")
    parser.add_argument("run_b", type=Path, help="another run folder (or a checkpoint file)")
    parser.add_argument("--checkpoint", default="last.pt",
                        help="the checkpoint in each folder (default last.pt)")
    args = parser.parse_args(argv)
    result = compare(_method_state(args.run_a, args.checkpoint), _method_state(args.run_b, args.checkpoint))
    lines = _run_lines("a", args.run_a) + _run_lines("b", args.run_b)
    lines.append(f"method tensors compared: {result['tensors']}, bit-identical: {result['identical']}, "
                 f"differ: {result['tensors'] - result['identical']}"
                 + (f" ({result['only_in_one']} in one checkpoint only)" if result["only_in_one"] else ""))
    if result["identical"] < result["tensors"]:
        lines.append(f"largest |a - b|: {result['max_abs']:.3g} ({result['max_where']}); "
                     f"||a - b|| / ||a||: {result['relative']:.3g}")
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """One-line errors for a missing folder or checkpoint (:func:`voxuda.cli.script_main`)."""
    from voxuda.cli import script_main

    return script_main("compare_runs", _main, argv)


if __name__ == "__main__":
    sys.exit(main())

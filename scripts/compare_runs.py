"""Two training runs compared weight by weight: bit-identical or not, how far apart, and on what numerics.

Why: with the same code, data, seed and settings a run retrained on another machine can end elsewhere
(docs/training.md, "Reproducibility"). This says whether two run folders hold the same weights, how far
apart they are, and what each ran on (``run.json``'s ``numerics``), so that a retrained number that differs
can be traced to the machine or not.

    python scripts/compare_runs.py RUN_A RUN_B [--checkpoint last.pt]
    python scripts/compare_runs.py SUITE_OUT_A SUITE_OUT_B [--label L ...]

Two run folders: the method's floating-point tensors in the checkpoint are compared (student, teacher,
discriminator; not the optimiser or random states). Printed: how many are bit-identical, the largest
absolute difference and where, ``||a - b|| / ||a||`` over them all (the relative drift of
:mod:`voxuda.engine.drift`, with run A as the start), and each run's test Dice where ``eval_test_best.json``
holds it.

Two benchmark output folders (each with ``results.json``): every run both hold is paired, as Markdown. Per
run and network: the selected checkpoint's test Dice in each (identity input) and whether the trained
weights are bit-identical; per row (target, label, network): B - A as the mean and 95 % t interval over
seeds and the mean absolute difference. It answers "did the rerun reproduce the folder, and if not, by how
much did the numbers move", which a paired comparison inside one folder cannot.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from voxuda.engine.checkpoint import load_checkpoint
from voxuda.engine.drift import relative_drift
from voxuda.engine.provenance import run_numerics_labels
from voxuda.errors import ConfigError
from voxuda.jsonio import read_json


def _method_state(run: Path, checkpoint: str) -> dict[str, Any]:
    path = run / checkpoint if run.is_dir() else run
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint; give a run folder holding {checkpoint} "
                          "(or a .pt file)")
    return dict(_float_tensors(load_checkpoint(path)["method"]))


def _float_tensors(state: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The floating-point tensors of a method state, nested states (a noise model's, a sampler's) flattened
    to dotted keys; other values (names, counters, integer tensors) are not weights and are skipped."""
    import torch

    if isinstance(state, torch.Tensor):
        if state.is_floating_point():
            yield prefix, state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from _float_tensors(value, f"{prefix}.{key}" if prefix else str(key))


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
    labels = run_numerics_labels(read_json(folder / "run.json", default={}))
    dice = read_json(folder / "eval_test_best.json", default={}).get("overall", {}).get("dice_fg")
    dice_text = f", test Dice {dice:.4f}" if isinstance(dice, (int, float)) else ""  # what `train` prints
    return [f"{tag}: {run} ({' then '.join(labels)}{dice_text})"]


def _weights_text(a: Path, b: Path, checkpoint: str) -> str:
    if not ((a / checkpoint).is_file() and (b / checkpoint).is_file()):
        return "-"
    result = compare(_method_state(a, checkpoint), _method_state(b, checkpoint))
    if result["identical"] == result["tensors"] and not result["only_in_one"]:
        return "bit-identical"
    return f"differ (relative distance {result['relative']:.3g})"  # no "|": it is a table cell


def _folder_numerics(folder: Path, run_ids: Sequence[str]) -> str:
    """The distinct numerics the compared runs of a benchmark folder trained on (``run.json``, resumed
    sessions included)."""
    labels: dict[str, None] = {}
    for run_id in run_ids:
        record = read_json(folder / "runs" / run_id / "run.json", default=None)
        if record is not None:
            labels.update(dict.fromkeys(run_numerics_labels(record)))
    return "; ".join(labels) or "no run.json"


def compare_suites(a: Path, b: Path, labels: Sequence[str], checkpoint: str) -> str:
    """The Markdown comparison of two benchmark output folders (see the module doc)."""
    from voxuda.bench.report import load_results
    from voxuda.bench.stats import paired_t_interval
    from voxuda.bench.tables import fmt_interval

    def selected(folder: Path) -> dict[tuple[str, str, str, int], Any]:
        return {(r.target, r.label, r.network, r.seed): r for r in load_results(folder).records
                if r.checkpoint == "selected" and r.input_denoiser == "identity"
                and (not labels or r.label in labels)}

    in_a, in_b = selected(a), selected(b)
    keys = sorted(set(in_a) & set(in_b))
    if not keys:
        raise ConfigError(f"{a} and {b} share no finished run{' with these labels' if labels else ''}")
    run_ids = list(dict.fromkeys(in_a[key].run_id for key in keys))
    lines = [f"A: `{a}` ({_folder_numerics(a, run_ids)}); B: `{b}` ({_folder_numerics(b, run_ids)}); "
             "selected checkpoints, identity input.", "",
             "| run | network | Dice A | Dice B | B - A | trained weights (relative distance: norm of B - A "
             "over norm of A) |", "|---|---|---|---|---|---|"]
    diffs: dict[tuple[str, str, str], list[float]] = {}
    for key in keys:
        ra, rb = in_a[key], in_b[key]
        target, label, network, _ = key
        run_id = ra.run_id
        weights = "-" if ra.mode != "train" else _weights_text(a / "runs" / run_id, b / "runs" / run_id,
                                                               checkpoint)
        name = f"{network}{' (reported)' if ra.reported else ''}"
        lines.append(f"| `{run_id}` | {name} | {ra.dice:.4f} | {rb.dice:.4f} | {rb.dice - ra.dice:+.4f} | "
                     f"{weights} |")
        diffs.setdefault((target, label, f"{network}{', reported' if ra.reported else ''}"), []).append(
            rb.dice - ra.dice)
    lines += ["", "| target | row (network) | seeds | B - A, mean [95 % t] | mean abs(B - A) |",
              "|---|---|---|---|---|"]
    for (target, label, name), values in diffs.items():
        interval = paired_t_interval(values)
        assert interval is not None
        spread = sum(abs(v) for v in values) / len(values)
        lines.append(f"| `{target}` | `{label}` ({name}) | {len(values)} | {fmt_interval(interval)} | "
                     f"{spread:.4f} |")
    return "\n".join(lines)


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("run_a", type=Path,
                        help="a run folder, a checkpoint file or a benchmark output folder")
    parser.add_argument("run_b", type=Path, help="the same kind of folder or file to compare it with")
    parser.add_argument("--checkpoint", default="last.pt",
                        help="the checkpoint in each run folder (default last.pt)")
    parser.add_argument("--label", action="append", default=[],
                        help="benchmark folders: only these row labels (repeatable; default all)")
    args = parser.parse_args(argv)
    if (args.run_a / "results.json").is_file() or (args.run_b / "results.json").is_file():
        print(compare_suites(args.run_a, args.run_b, args.label, args.checkpoint))
        return 0
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

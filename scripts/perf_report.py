#!/usr/bin/env python
"""Write docs/performance.md's training sections from the JSON of ``benchmarks/bench_train.py``.

Every figure in the generated tables comes from the JSON; nothing is typed in by hand. The section
``## Bilateral filter`` (written by the bilateral benchmark's owner) is carried over from the existing file
unchanged, so regenerating the training part never loses it.

Usage::

    python scripts/perf_report.py docs/perf/*.json --out docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

BILATERAL_HEADER = "## Bilateral filter"
BILATERAL_PLACEHOLDER = (
    f"{BILATERAL_HEADER}\n\nThe bilateral kernel's throughput is measured by "
    "`benchmarks/bench_bilateral.py`; its results and ratios go here.\n"
)


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def contention_note(machine: dict[str, Any]) -> str:
    """A warning line when the machine was busier than its cores during the measurement."""
    cores = int(machine.get("cores") or 0)
    loads = [*machine.get("load_average_start", []), *machine.get("load_average_end", [])]
    if not cores or not loads or max(loads) <= cores:
        return ""
    return (f"- **Contention**: the load average reached {fmt(max(loads))} on {cores} logical CPUs. Every "
            "thread count then competes with other jobs; 2-thread runs suffer most (OpenMP threads wait "
            "for each other), so their absolute figures and even their ratios are far less reliable than "
            "the 1-thread ones. Re-measure on idle cores before relying on a 2-thread figure.\n")


def machine_section(result: dict[str, Any]) -> str:
    m = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    start = ", ".join(fmt(x) for x in m.get("load_average_start", []))
    end = ", ".join(fmt(x) for x in m.get("load_average_end", []))
    s = result["settings"]
    return (
        "## Machine and method\n\n"
        f"- CPU: {m['cpu']} ({m['cores']} logical CPUs), {m['platform']}; mkldnn: {m['mkldnn']}, "
        f"avx512_bf16: {m['flags_bf16']}.\n"
        f"- Versions: {versions}.\n"
        f"- Load average (1, 5, 15 min) at the start: {start}; at the end: {end}. The machine was shared "
        "with other jobs: read ratios, which were measured seconds apart, rather than absolute figures.\n"
        f"- Batch {s['batch']} x 1 x {s['box']}^3, the trainer's own step (sampling, training_step, "
        "backward, optimiser, scheduler, EMA) on synthetic in-memory data of the quick preset's split sizes; "
        "variants measured interleaved, in the rounds and steps of each table's command (at the paper size "
        "half the rounds, 1 step each), medians; ratios are medians of per-round ratios. CPU time is the "
        "process's (all threads): less disturbed by other jobs than wall time.\n"
        "- Steady state: before timing, each trainer denoises every target volume into its teacher-input "
        "cache (where the method has one and it is on), as a run does in its first pass over the target "
        "split; a few steps of a fresh trainer would otherwise pay a denoising that a run pays once per "
        "volume (the quick suite draws each target volume 4 times in 100 steps, the appearance suite 12 "
        "times in 300).\n"
        f"{contention_note(m)}"
        "- Each table names the command that measured it; this page: "
        "`python scripts/perf_report.py docs/perf/*.json --out docs/performance.md`.\n"
    )


def training_table(rows: list[dict[str, Any]]) -> str:
    out = ["## Training throughput (samples/s)\n",
           "Samples/s = batch / median wall time of a step. `x source-only` = the method's step time over "
           "source-only's in the same rounds (wall; CPU in brackets).\n"]
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["backbone"], row["size"], row["threads"]), []).append(row)
    body = []
    for (backbone, size, threads), members in groups.items():
        for row in members:
            body.append([backbone, size, str(threads), row["method"], fmt(row["samples_per_s"], 1),
                         f"{fmt(row['x_source_only_time'])} ({fmt(row['x_source_only_cpu'])})"])
    out.append(table(["backbone", "size", "threads", "method", "samples/s", "x source-only"], body))
    backbones = sorted({b for b, _, _ in groups})
    missing = [f"{b} {size} {t} thread(s)" for b in backbones for size in ("quick", "paper") for t in (1, 2)
               if (b, size, t) not in groups]
    if missing:
        out.append("\nNot measured in these runs: " + ", ".join(missing) + ".")
    return "\n".join(out) + "\n"


PART_ORDER = (
    "student forwards", "teacher forward", "pseudo-label selection", "NGM (source noise)",
    "teacher-input denoising", "discriminator (forward)", "losses and the rest of training_step",
    "backward (+ clipping, scheduler, logging)", "optimiser step", "EMA update", "sampling",
)


def ratio_section(ratio: dict[str, Any]) -> str:
    out = ["## Vox-UDA / source-only at the quick size\n",
           "Four variants interleaved in the same rounds: source-only and Vox-UDA on today's path (every "
           "change below switched off) and now (the defaults). U-Net 8-16-32.\n"]
    body = []
    for threads, entry in ratio.items():
        for clock in ("wall", "cpu"):
            e = entry[clock]
            body.append([threads, clock, fmt(e["ratio_today"]), fmt(e["ratio_now"]),
                         fmt(e["source_only_speedup"]), fmt(e["vox_uda_speedup"])])
    out.append(table(["threads", "clock", "Vox-UDA / source-only, today", "Vox-UDA / source-only, now",
                      "source-only speed-up", "Vox-UDA speed-up"], body))
    for threads, entry in ratio.items():
        variants = entry["variants"]
        out.append(f"\nSamples/s at {threads} thread(s): " + ", ".join(
            f"{name} {fmt(v['samples_per_s'], 1)}" for name, v in variants.items()) + ".\n")
        parts = entry["breakdown"]
        so, vu = parts["source_only"], parts["vox_uda"]
        body = []
        for name in PART_ORDER:
            a, b = so["parts_s"].get(name, 0.0), vu["parts_s"].get(name, 0.0)
            body.append([name, fmt(1000 * a, 1), fmt(1000 * b, 1), fmt(b / so["cpu_step_s"])])
        body.append(["**step**", fmt(1000 * so["cpu_step_s"], 1), fmt(1000 * vu["cpu_step_s"], 1),
                     fmt(vu["cpu_step_s"] / so["cpu_step_s"])])
        out.append(f"Breakdown now, {threads} thread(s), CPU ms per step (explicit timers around the "
                   "method's parts; the steady state of a run: every target volume's denoised teacher "
                   "input is already cached, as after the run's first pass over the target split):\n")
        out.append(table(["part", "source-only", "Vox-UDA", "Vox-UDA part / source-only step"], body))
        forwards = vu["forwards_per_step"]
        samples = vu["forward_samples_per_step"]
        out.append(f"\nNetwork forwards per Vox-UDA step: student {forwards['student']:g} "
                   f"({samples['student']:g} samples), teacher {forwards['teacher']:g} "
                   f"({samples['teacher']:g} samples); source-only: student "
                   f"{so['forwards_per_step']['student']:g}.\n")
    return "\n".join(out) + "\n"


def changes_section(rows: list[dict[str, Any]]) -> str:
    out = ["## Before and after each change\n",
           "Each pair measured interleaved in the same run (`before` = the change switched off). Speed-up = "
           "median of per-round time ratios before/after.\n"]
    body = []
    for row in rows:
        body.append([row["change"], row["method"], row["size"], str(row["threads"]),
                     fmt(row["before"]["samples_per_s"], 1), fmt(row["after"]["samples_per_s"], 1),
                     fmt(row["speedup"]), fmt(row["cpu_speedup"])])
    out.append(table(["change", "method", "size", "threads", "before samples/s", "after samples/s",
                      "speed-up (wall)", "speed-up (CPU)"], body))
    amp = [r for r in rows if r["change"].startswith("bfloat16")]
    if amp:
        best = max(r["cpu_speedup"] for r in amp)
        verdict = ("faster on this CPU" if best > 1.05 else
                   "not faster on this CPU, so it stays off (trainer.amp = false)")
        out.append(f"\nbfloat16 autocast: best CPU-time speed-up {fmt(best)}: {verdict}.\n")
    return "\n".join(out) + "\n"


def numba_section(rows: list[dict[str, Any]]) -> str:
    out = ["## numba threading layer\n",
           "Each row is its own process (numba fixes its threading layer at the first parallel call): "
           "source-only steps before and after one numba bilateral call in that process, then Vox-UDA "
           "steps without the teacher-input cache (numba runs every step). voxuda's numba kernels "
           "module now selects `workqueue` when imported (training, evaluation, segmentation) unless "
           "`NUMBA_THREADING_LAYER` is set.\n"]
    body = [[r["layer"], str(r["threads"]), fmt(1000 * r["source_only_before_s"], 0),
             fmt(1000 * r["source_only_after_s"], 0), fmt(r["slowdown_after_numba"]),
             fmt(r["vox_uda_uncached_step_s"], 2)] for r in rows]
    out.append(table(["layer", "threads", "source-only ms before", "ms after one numba call",
                      "slow-down", "Vox-UDA s/step (uncached)"], body))
    by_layer: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        by_layer.setdefault((r["layer"], r["threads"]), []).append(r["slowdown_after_numba"])
    out.append("\nMedian slow-down after one numba call: " + ", ".join(
        f"{layer} at {threads} thread(s) x{fmt(statistics.median(v))}"
        for (layer, threads), v in by_layer.items()) + ".\n")
    return "\n".join(out) + "\n"


def bilateral_section(existing: Path) -> str:
    """The current file's bilateral section, or the placeholder."""
    if not existing.is_file():
        return BILATERAL_PLACEHOLDER
    text = existing.read_text(encoding="utf-8")
    start = text.find(BILATERAL_HEADER + "\n")
    if start < 0:
        return BILATERAL_PLACEHOLDER
    rest = text[start + len(BILATERAL_HEADER):]
    end = rest.find("\n## ")
    return BILATERAL_HEADER + (rest if end < 0 else rest[: end + 1])


CHANGES_TEXT = """## What changed (issue 18)

- **`channels_last_3d` on by default** for `unet3d` (`method.backbone.channels_last_3d`, false = the
  contiguous layout): weights and activations in the channels-last layout, which oneDNN's 3D convolutions
  (forward and backward) run faster on this CPU. Results equal up to float rounding
  (tests/engine/test_throughput_equivalence.py). Under it, GroupNorm layers with one channel per group run
  in the contiguous layout (`ContiguousGroupNorm`): torch's channels-last GroupNorm is about twice as slow
  there. `voxresnet` has no such option (unchanged).
- **No NaN fill in deterministic mode**: `trainer.deterministic = true` (the default) also switched on
  torch's `fill_uninitialized_memory`, a debugging guard that writes NaN into every fresh buffer; the
  trainer turns the guard off. Results are bit-identical (tested).
- **Teacher input denoised once per target volume**: mean teacher and Vox-UDA keep each target volume's
  denoised teacher input after its first use (`method.teacher_input_cache_mb`, 0 = off), keyed by the
  volume's position in the target split (`TargetBatch.index`, set by the trainer), invalidated when the
  denoiser or any of its settings change. Target batches reach the teacher unaugmented, so the cache is
  exact: training is bit-identical with and without it (tested).
- **Vox-UDA's feature consistency written out**: value and gradient both from three per-vector reductions
  (`|a|`, `|b|`, `a . b`), so no full-size normalised copy or difference is made or kept; the value equals
  autograd's normalised expression within 1e-6 relative and the gradient within 1e-5 (tested, also for
  nearly equal features), without autograd's passes through two normalisations and their broadcasts over
  the channel axis.
- **Class index by `max(dim=1).indices`** instead of `argmax(dim=1)` in the pseudo-label metrics logged
  every step (`voxuda.methods.losses.class_index`): the same indices (first maximum, NaN included, tested),
  but argmax over the class axis of contiguous logits is several times slower on CPU.
- **numba off OpenMP**: `voxuda.ops.backends._numba_kernels` selects numba's `workqueue` threading layer
  when it is imported (unless `NUMBA_THREADING_LAYER` is set), before any numba kernel runs. On numba's
  `omp` layer, one numba kernel changes torch's threading in the same process: on idle cores a process
  that asked torch for 1 thread then ran its steps at the 2-thread speed (table below: the requested thread
  count no longer holds), and on a loaded machine (load average 5.7: `docs/perf/numba_layer.json` as of
  commit a8f3ccf) the same steps ran 5-7x slower. On `workqueue` torch's steps are unchanged at either
  thread count.
- **Measured and left as they were**: bfloat16 autocast (`trainer.amp`, see its row), the sampler (its
  share of a step is in the breakdown's `sampling` row: the data already sit in memory as contiguous
  tensors), and the number of forwards per Vox-UDA step (3 student, 1 teacher: each is needed by the
  method; running the three student forwards as one batch of 24 was not faster in a one-off measurement
  of forward + backward at the quick size, which is not part of this benchmark).
"""


def render(result: dict[str, Any], existing: Path) -> str:
    parts = ["# Performance\n",
             "Training throughput on CPU (issue 18), generated by `scripts/perf_report.py` from "
             "`docs/perf/*.json` (written by `benchmarks/bench_train.py`).\n",
             machine_section(result), CHANGES_TEXT]
    renderers = {"table": training_table, "ratio": ratio_section, "changes": changes_section,
                 "numba_layer": numba_section}
    for section in ("ratio", "changes", "table", "numba_layer"):
        if section in result:
            parts.append(renderers[section](result[section]) + "\n" + commands_line(result, section))
    parts.append(bilateral_section(existing))
    return "\n".join(part.rstrip() + "\n" for part in parts)


SECTIONS = ("table", "ratio", "changes", "numba_layer")


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of the benchmark (e.g. one per section) as one result; each section remembers the
    commands that produced it (``commands``), the machine is the first run's with the load averages of all."""
    merged: dict[str, Any] = {"machine": dict(results[0]["machine"]), "settings": results[0]["settings"],
                              "commands": {}}
    merged["machine"]["load_average_end"] = results[-1]["machine"].get("load_average_end", [])
    for result in results:
        for section in SECTIONS:
            if section not in result:
                continue
            merged["commands"].setdefault(section, []).append(result["command"])
            machine = result.get("machine", {})
            merged.setdefault("loads", {}).setdefault(section, []).append(
                (machine.get("load_average_start", []), machine.get("load_average_end", [])))
            if isinstance(result[section], dict):
                merged.setdefault(section, {}).update(result[section])
            else:
                merged.setdefault(section, []).extend(result[section])
    merged["command"] = "; ".join(r["command"] for r in results)
    return merged


def commands_line(result: dict[str, Any], section: str) -> str:
    commands = result.get("commands", {}).get(section, [result.get("command", "")])
    loads = result.get("loads", {}).get(section, [])
    shown = "; ".join(f"{', '.join(fmt(x) for x in start)} before, {', '.join(fmt(x) for x in end)} after"
                      for start, end in loads if start and end)
    load_text = f" Load average (1, 5, 15 min) of that run: {shown}." if shown else ""
    return "Produced by: " + "; ".join(f"`{c}`" for c in commands) + "." + load_text + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="JSON files written by benchmarks/bench_train.py")
    parser.add_argument("--out", default="docs/performance.md")
    args = parser.parse_args(argv)
    result = merge([json.loads(Path(path).read_text(encoding="utf-8")) for path in args.results])
    out = Path(args.out)
    text = render(result, out)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    from voxuda.cli import script_main

    raise SystemExit(script_main("perf_report", main))  # one-line user errors

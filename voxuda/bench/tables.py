"""Result files: ``results.csv`` (one row per table line), ``results.json`` (rows, per-seed records,
provenance) and ``results.md`` (one Markdown table per target domain with the flags spelled out).

Flags are part of the table, not a footnote somebody may drop: the oracle is marked "upper bound", a row
whose checkpoint was chosen with target labels is marked "target labels used for selection", a warm start
names its parent run.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from voxuda.bench.io import write_json, write_text
from voxuda.bench.results import EvalRecord, Row, class_names

#: Columns of the Markdown/console table before the per-class Dice columns.
TABLE_COLUMNS = ("run", "method", "test-time input", "selection", "Dice", "IoU", "gap closed",
                 "selection regret", "notes")


def fmt(mean: float, std: float, digits: int = 3) -> str:
    if mean is None or math.isnan(mean):
        return "-"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt1(value: float, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


def notes(row: Row) -> str:
    parts = []
    if row.flag:
        parts.append(f"**{row.flag}** (trained on target labels)")
    if row.leaky_selection:
        parts.append("**target labels used for selection**")
    if row.init_from:
        parts.append(f"warm start from {row.init_from}")
    parts.append(f"{row.n_seeds} seed{'s' if row.n_seeds != 1 else ''}")
    return "; ".join(parts)


def table_lines(rows: Sequence[Row], classes: Sequence[str]) -> list[list[str]]:
    """Header + body cells of the result table (shared by Markdown and the console printout)."""
    header = list(TABLE_COLUMNS[:-1]) + [f"Dice {c}" for c in classes] + [TABLE_COLUMNS[-1]]
    body = []
    for r in rows:
        single = r.n_seeds < 2  # a std over one seed would read as "no variance": print the mean only
        cells = [
            r.label + (" (upper bound)" if r.flag else ""),
            r.method,
            r.input_denoiser,
            r.selection + (" (LEAK)" if r.leaky_selection else ""),
            fmt(r.dice_mean, math.nan if single else r.dice_std),
            fmt(r.iou_mean, math.nan if single else r.iou_std),
            fmt1(r.gap_closed),
            fmt1(r.regret_mean, 3),
        ]
        for c in classes:
            mean, std = r.per_class.get(c, {}).get("dice", (math.nan, math.nan))
            cells.append(fmt(mean, math.nan if single else std))
        cells.append(notes(r))
        body.append(cells)
    return [header, *body]


def markdown_table(rows: Sequence[Row], classes: Sequence[str]) -> str:
    lines = table_lines(rows, classes)
    out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
    out += ["| " + " | ".join(cells) + " |" for cells in lines[1:]]
    return "\n".join(out)


def console_table(rows: Sequence[Row], classes: Sequence[str]) -> str:
    """A plain fixed-width table (no per-class columns: they do not fit a terminal)."""
    lines = [cells[:8] for cells in table_lines(rows, [])]
    widths = [max(len(c) for c in col) for col in zip(*lines)]
    text = []
    for i, cells in enumerate(lines):
        text.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        if i == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)


def by_target(rows: Sequence[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(r.target, []).append(r)
    return out


def csv_text(rows: Sequence[Row], classes: Sequence[str]) -> str:
    buf = io.StringIO()
    flat = [r.flat(classes) for r in rows]
    if not flat:
        return ""
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


LEGEND = """\
Columns: **Dice**/**IoU** of the macromolecule class on the target's labelled test split, mean ± std over
seeds; **test-time input**: the denoiser applied to the target volume before the network at evaluation
(`identity` = raw input); **selection**: the criterion that chose the evaluated checkpoint (`(LEAK)` = it
used target labels); **gap closed** = (Dice − source-only) / (oracle − source-only), references without
test-time denoising; **selection regret** = Dice of the checkpoint `target_oracle` would have chosen minus
Dice of the one actually chosen (mean over seeds; `-` when not measured); **Dice <class>**: per macromolecule
class (volumes grouped by the class of their central particle)."""


def markdown_document(rows: Sequence[Row], classes: Sequence[str], meta: Mapping[str, Any],
                      figures: Sequence[str] = (), findings: Sequence[str] = ()) -> str:
    """The whole ``results.md`` (also the body of the generated ``docs/results.md``)."""
    out = [f"# Benchmark results: suite `{meta.get('suite')}`", ""]
    out.append("Generated by `voxuda benchmark`; do not edit by hand.")
    out.append("")
    for key in ("command", "date", "versions", "machine", "wall_time", "data", "trainer"):
        if key in meta and meta[key]:
            value = meta[key]
            if isinstance(value, Mapping):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            out.append(f"- **{key.replace('_', ' ')}**: `{value}`" if key == "command" else
                       f"- **{key.replace('_', ' ')}**: {value}")
    sessions = meta.get("invocations") or []
    if sessions:
        out += ["", "Sessions of this suite (a resumed suite lists each; `cpu` = CPU time of the benchmark "
                "process):", ""]
        out += [f"- {s['date']}: `{s['command'] or '(library call)'}`, wall {s['wall_seconds']:.0f} s, "
                f"cpu {s.get('cpu_seconds', float('nan')):.0f} s, data {s['data_seconds']:.0f} s, "
                f"{s['trained']} run(s) trained, {s['skipped']} already done" for s in sessions]
    out.append("")
    if findings:
        out += ["## Findings (computed from the table)", ""] + [f"- {f}" for f in findings] + [""]
    for target, target_rows in by_target(rows).items():
        out += [f"## Target domain `{target}`", "", markdown_table(target_rows, classes), ""]
    out += [LEGEND, ""]
    if figures:
        out += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    return "\n".join(out)


def findings(rows: Sequence[Row]) -> list[str]:
    """Plain statements computed from the rows: where Vox-UDA does and does not beat each baseline."""
    out = []
    for target, target_rows in by_target(rows).items():
        vox = [r for r in target_rows if r.method == "vox_uda" and not r.leaky_selection]
        others = [r for r in target_rows if r.method != "vox_uda" and not r.flag and not r.leaky_selection]
        for v in vox:
            beaten = [o for o in others if not math.isnan(o.dice_mean) and v.dice_mean > o.dice_mean]
            not_beaten = [o for o in others if not math.isnan(o.dice_mean) and v.dice_mean <= o.dice_mean]
            name = f"`{v.label}` ({v.input_denoiser} input, Dice {v.dice_mean:.3f})"
            if not_beaten:
                listed = ", ".join(
                    f"`{o.label}` with {o.input_denoiser} input ({o.dice_mean:.3f}{_noise(v, o)})"
                    for o in not_beaten)
                out.append(f"{target}: {name} does NOT beat {listed}.")
            if beaten:
                listed = ", ".join(f"`{o.label}`/{o.input_denoiser} ({o.dice_mean:.3f}{_noise(v, o)})"
                                   for o in beaten)
                out.append(f"{target}: {name} beats {listed}.")
        so = {r.input_denoiser: r for r in target_rows if r.method == "source_only"}
        if "identity" in so and len(so) > 1:
            for den, r in so.items():
                if den != "identity":
                    raw = so["identity"].dice_mean
                    out.append(f"{target}: test-time {den} on the source-only model (no adaptation training) "
                               f"changes Dice by {r.dice_mean - raw:+.3f} ({raw:.3f} -> {r.dice_mean:.3f}).")
        fair = [r for r in target_rows
                if not r.flag and not r.leaky_selection and not math.isnan(r.dice_mean)]
        if fair:
            best = max(fair, key=lambda r: r.dice_mean)
            out.append(f"{target}: best row without target labels: `{best.label}` with {best.input_denoiser} "
                       f"input (Dice {best.dice_mean:.3f}).")
        seeds = min((r.n_seeds for r in target_rows), default=0)
        if seeds < 2:
            out.append(f"{target}: one seed only; differences between rows are not tested against seed "
                       "variance.")
        else:
            out.append(f"{target}: {seeds} seeds; differences smaller than about one std over seeds are not "
                       "significant.")
    return out


def _noise(a: Row, b: Row) -> str:
    """Marks a difference smaller than the larger of the two seed stds (not distinguishable from noise)."""
    if a.n_seeds < 2 or b.n_seeds < 2:
        return ""
    return ", within 1 std" if abs(a.dice_mean - b.dice_mean) < max(a.dice_std, b.dice_std) else ""


def write_results(out_dir: Path, rows: Sequence[Row], records: Sequence[EvalRecord],
                  meta: Mapping[str, Any], figures: Sequence[str] = ()) -> dict[str, Path]:
    """Write results.csv, results.json and results.md atomically; return their paths."""
    classes = class_names(records)
    found = findings(rows)
    md = markdown_document(rows, classes, meta, figures, found)
    paths = {
        "csv": write_text(out_dir / "results.csv", csv_text(rows, classes)),
        "json": write_json(out_dir / "results.json", {
            "meta": dict(meta),
            "classes": classes,
            "findings": found,
            "rows": [r.flat(classes) for r in rows],
            "records": [r.to_dict() for r in records],
        }),
        "md": write_text(out_dir / "results.md", md),
    }
    return paths

"""Result files: ``results.csv`` (one row per table line), ``results.json`` (rows, per-seed records, run
diagnostics, provenance) and ``results.md`` (one Markdown table per target domain with the flags spelled out).

Flags are part of the table, not a footnote somebody may drop: the oracle is marked "upper bound", a row
whose checkpoint was chosen with target labels is marked "target labels used for selection", a warm start
names its parent run, the control is marked as such, a network other than the method's reported one is
its own row (``label [student]``), and a run whose discriminator stayed at chance says so. Each target's
table states the parent's held-out source-validation Dice, the checkpoint noise and every run's selection
rule. Differences between runs are **paired** over seeds (:mod:`voxuda.bench.stats`); the findings claim a
difference only where its 95 % interval excludes zero.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from voxuda.bench.diagnostics import CHANCE_ACCURACY, TAIL_FRACTION, discriminator_at_chance
from voxuda.bench.io import write_json, write_text
from voxuda.bench.results import EvalRecord, Row, SuiteResults, TargetSummary
from voxuda.bench.stats import LEVEL, PairedInterval

#: Columns of the Markdown table before the baseline, regret, per-class Dice and notes columns.
TABLE_COLUMNS = ("run", "network", "method", "test-time input", "selection", "Dice", "IoU", "gap closed",
                 "Δ vs control (95 % CI)", "Δ vs parent (95 % CI)")
#: What the console printout keeps (per-class columns and notes do not fit a terminal).
CONSOLE_COLUMNS = ("run", "network", "test-time input", "Dice", "gap closed", "Δ vs control (95 % CI)",
                   "Δ vs parent (95 % CI)", "selection regret")


def fmt(mean: float, std: float, digits: int = 3) -> str:
    if mean is None or math.isnan(mean):
        return "-"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt1(value: float, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


def fmt_interval(interval: PairedInterval | None) -> str:
    return "-" if interval is None else interval.text()


def notes(row: Row, *, controls: Sequence[str] = (), reported_network: str = "") -> str:
    """The notes cell: flags, warm start or reuse, control, network, discriminator, pseudo-labels, drift."""
    parts = []
    if row.flag:
        parts.append(f"**{row.flag}** (trained on target labels)")
    if row.leaky_selection:
        parts.append("**target labels used for selection**")
    if row.mode == "evaluate_only":
        parts.append(f"evaluate-only: {row.init_from}'s checkpoint under this run's config, no training")
    elif row.init_from:
        parts.append(f"warm start from {row.init_from}")
    if row.mode == "shared" and row.weights_from:
        parts.append(f"trained once on {row.weights_from.split('/')[0]}, shared (never sees the target)")
    if row.label in controls and row.reported:
        parts.append("**control** (the adaptation runs' extra steps and schedule, no target)")
    if not row.reported:
        parts.append(f"**{row.network_name} network**, not the method's reported one"
                     + (f" ({reported_network})" if reported_network else ""))
    diag = row.diagnostics
    if discriminator_at_chance(diag):
        parts.append(f"**discriminator at chance** (acc {diag['domain_accuracy_tail']:.2f})")
    elif "domain_accuracy_tail" in diag:
        parts.append(f"discriminator acc {diag['domain_accuracy_tail']:.2f}")
    fg = [f"{name} {diag[key]:.2%}" for key, name in (("pseudo_fg_fraction", "pseudo-label fg"),
                                                       ("teacher_fg_fraction", "teacher fg")) if key in diag]
    if fg:
        parts.append(", ".join(fg))
    if diag.get("drift"):
        parts.append("drift from warm start " + ", ".join(f"{k} {v:.3f}" for k, v in diag["drift"].items()))
    parts.append(f"{row.n_seeds} seed{'s' if row.n_seeds != 1 else ''}")
    return "; ".join(parts)


def _baselines(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(b for r in rows for b in r.vs_baselines))


def table_lines(rows: Sequence[Row], classes: Sequence[str]) -> list[list[str]]:
    """Header + body cells of the result table (shared by Markdown and the console printout)."""
    baselines = _baselines(rows)
    header = (list(TABLE_COLUMNS) + [f"Δ vs {b} (95 % CI)" for b in baselines] + ["selection regret"]
              + [f"Dice {c}" for c in classes] + ["notes"])
    controls = [r.control for r in rows if r.control]
    reported_net = {r.label: r.network_name for r in rows if r.reported}
    body = []
    for r in rows:
        single = r.n_seeds < 2  # a std over one seed would read as "no variance": print the mean only
        network = r.network_name + (" (reported)" if r.reported and r.network else "")
        cells = [
            r.display_label + (" (upper bound)" if r.flag else ""),
            network,
            r.method,
            r.input_denoiser,
            r.selection + (" (LEAK)" if r.leaky_selection else ""),
            fmt(r.dice_mean, math.nan if single else r.dice_std),
            fmt(r.iou_mean, math.nan if single else r.iou_std),
            fmt1(r.gap_closed),
            fmt_interval(r.vs_control),
            fmt_interval(r.vs_parent),
        ]
        cells += [fmt_interval(r.vs_baselines.get(b)) for b in baselines]
        cells.append(fmt1(r.regret_mean, 3))
        for c in classes:
            mean, std = r.per_class.get(c, {}).get("dice", (math.nan, math.nan))
            cells.append(fmt(mean, math.nan if single else std))
        cells.append(notes(r, controls=controls,
                           reported_network="" if r.reported else reported_net.get(r.label, "")))
        body.append(cells)
    return [header, *body]


def markdown_table(rows: Sequence[Row], classes: Sequence[str]) -> str:
    lines = table_lines(rows, classes)
    out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
    out += ["| " + " | ".join(cells) + " |" for cells in lines[1:]]
    return "\n".join(out)


def console_table(rows: Sequence[Row], classes: Sequence[str]) -> str:
    """A plain fixed-width table (no per-class columns or notes: they do not fit a terminal)."""
    full = table_lines(rows, [])
    keep = [full[0].index(c) for c in CONSOLE_COLUMNS]
    lines = [[cells[i] for i in keep] for cells in full]
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
    fields = list(dict.fromkeys(k for f in flat for k in f))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


LEGEND = f"""\
Columns: **run** is the suite label; a network other than the method's reported predictor is its own row,
`label [student]` or `label [teacher]`; **network** names the network a row scores (`(reported)`: the one
behind the method's `predictor()`, i.e. the method's own row). **Dice**/**IoU** of the macromolecule class on
the target's labelled test split, mean ± std over seeds; **test-time input**: the denoiser applied to the
target volume before the network at evaluation (`identity` = raw input); **selection**: the criterion that
chose the evaluated checkpoint (`(LEAK)` = it used target labels); **gap closed** = (Dice − source-only) /
(oracle − source-only), references without test-time denoising, source-only = the parent of the warm starts;
**Δ vs control** / **Δ vs parent** / **Δ vs <baseline>**: mean of the paired per-seed differences (this row
minus the control, the warm-start parent, or an evaluate-only baseline of the same parent, matched by seed
and test-time input) with its {LEVEL * 100:.0f} % interval (Student t, n − 1 degrees of freedom; `n.s.` = the
interval contains 0, not significant; one seed = untested); the **control** is the trained `source_only` run
continuing from the same parent for the adaptation runs' extra steps (`source_only_cont`); **selection
regret** = Dice of the checkpoint `target_oracle` would have chosen minus Dice of the one actually chosen
(mean over seeds; `-` when not measured, and for networks other than the reported one); **Dice <class>**:
per macromolecule class (volumes grouped by the class of their central particle); notes: **discriminator
at chance** = mean domain accuracy over the last {TAIL_FRACTION * 100:.0f} % of steps below {CHANCE_ACCURACY};
pseudo-label and teacher foreground fractions are run means; drift = relative L2 distance of each network
from the warm start (`run.json`)."""


def summary_lines(summary: TargetSummary) -> list[str]:
    """The bullet lines above a target's table: parent, checkpoint noise, selection rules."""
    out = []
    parent = f"`{summary.parent}`" if summary.parent else "none"
    if summary.parent_source_val is not None:
        mean, std = summary.parent_source_val
        n = summary.parent_source_val_seeds
        spread = f" ± {std:.3f}" if n > 1 else ""
        out.append(f"**parent** {parent}: held-out source-validation Dice {mean:.3f}{spread} "
                   f"(best source_val score, {n} seed{'s' if n != 1 else ''})")
    else:
        out.append(f"**parent** {parent}: held-out source-validation Dice not logged (it was not selected "
                   "by source_val)")
    if summary.noise_seeds:
        steps = ", ".join(str(s) for s in summary.noise_steps)
        out.append(f"**checkpoint noise** of {parent}: target test Dice over its last kept evaluation points "
                   f"(steps {steps}): std {summary.noise_std:.3f}, max − min {summary.noise_range:.3f} "
                   f"(mean over {summary.noise_seeds} seed{'s' if summary.noise_seeds != 1 else ''}); "
                   "differences of this size between checkpoints of one run are noise")
    else:
        out.append(f"**checkpoint noise** of {parent}: not measured (needs `selection_regret`, eval points "
                   "and `noise_points` > 0)")
    out.append("**selection rules**: " + "; ".join(summary.selection_rules))
    return out


def suite_sections(results: SuiteResults, figures: Sequence[str] = (), level: int = 2) -> list[str]:
    """Findings and one table per target of one suite (headings at ``level``)."""
    h = "#" * level
    classes = results.classes
    out = []
    found = findings(results.rows, results.records)
    if found:
        out += [f"{h} Findings (computed from the table)", ""] + [f"- {f}" for f in found] + [""]
    for target, target_rows in by_target(results.rows).items():
        out += [f"{h} Target domain `{target}`", ""]
        summary = results.summaries.get(target)
        if summary is not None:
            out += [f"- {line}" for line in summary_lines(summary)] + [""]
        out += [markdown_table(target_rows, classes), ""]
    out += [LEGEND, ""]
    if figures:
        out += [f"{h} Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    return out


#: an absolute POSIX path inside a recorded command or data line (not the ``//`` of a URL)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~])/[^\s`,;'\"]+")


def relative_paths(text: str, base: Path | None = None) -> str:
    """``text`` with every absolute path rewritten relative to ``base`` (default: the working directory).

    Why: a generated document is read on other machines; the output folders of the machine it ran on
    (``/tmp/...``, ``/home/<user>/...``) mean nothing there, while a path relative to the folder the
    command was run from (usually the repository root) says where the results sit beside the docs.
    """
    start = str(Path.cwd() if base is None else base)

    def relative(match: re.Match[str]) -> str:
        try:
            return os.path.relpath(match.group(0), start)
        except ValueError:  # another drive on Windows: no relative path exists
            return match.group(0)

    return _ABSOLUTE_PATH.sub(relative, text)


def _command_of(session: Mapping[str, Any], base: Path | None) -> str:
    return relative_paths(session["command"], base) if session.get("command") else "(library call)"


def provenance_lines(meta: Mapping[str, Any], base: Path | None = None) -> list[str]:
    """The provenance bullet list of a suite, paths relative to ``base`` (default: the working directory)."""
    out = []
    for key in ("command", "date", "versions", "machine", "numerics", "wall_time", "data", "trainer"):
        if key in meta and meta[key]:
            value = meta[key]
            if isinstance(value, Mapping):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            if key in ("command", "data"):
                value = relative_paths(str(value), base)
            out.append(f"- **{key.replace('_', ' ')}**: `{value}`" if key == "command" else
                       f"- **{key.replace('_', ' ')}**: {value}")
    sessions = meta.get("invocations") or []
    if sessions:
        out += ["", "Sessions of this suite (a resumed suite lists each; `cpu` = CPU time of the benchmark "
                "process):", ""]
        out += [f"- {s['date']}: `{_command_of(s, base)}`, wall {s['wall_seconds']:.0f} s, "
                f"cpu {s.get('cpu_seconds', float('nan')):.0f} s, data {s['data_seconds']:.0f} s, "
                f"{s['trained']} run(s) trained, {s.get('reused', 0)} evaluated without training, "
                f"{s['skipped']} already done" for s in sessions]
    return out


def markdown_document(results: SuiteResults, figures: Sequence[str] = ()) -> str:
    """The whole ``results.md`` of one suite."""
    meta = results.meta
    out = [f"# Benchmark results: suite `{meta.get('suite')}`", ""]
    out.append("Generated by `voxuda benchmark`; do not edit by hand.")
    out.append("")
    if meta.get("track"):
        out += [f"Track: **{meta['track']}**.", ""]
    out += provenance_lines(meta)
    out.append("")
    out += suite_sections(results, figures)
    return "\n".join(out)


def _compared(kind: str, label: str, interval: PairedInterval) -> str:
    """``vs control `x`: significantly better (+0.030 [+0.010, +0.050])`` or ``vs parent `y`: +0.010
    (1 seed: untested)``."""
    if not interval.tested or interval.identical:
        return f"vs {kind} `{label}`: {interval.text()}"
    verdict = interval.verdict()
    verdict = {"better": "significantly better", "worse": "significantly worse"}.get(verdict, verdict)
    return f"vs {kind} `{label}`: {verdict} ({interval.text()})"


def failed_run_findings(records: Sequence[EvalRecord]) -> list[str]:
    """One statement per run whose selected checkpoint (its reported network, raw test input) scores Dice 0:
    it got no test voxel right, a failed run whose row mean includes it.

    Why: an oracle of issue 15's full rule ended with foreground probabilities below 0.5 everywhere, so
    argmax called nothing foreground (docs/vox_uda.md, "Eleventh try at the bar's full rule"). The tables
    hid it in a mean and a wide std, and when the failed run is the upper bound every row's gap closed on
    that target divides by a lowered oracle mean, so the statement says how to read the gap instead.
    """
    out = []
    for r in sorted(records, key=lambda r: (r.target, r.label, r.seed)):
        if r.checkpoint != "selected" or not r.reported or r.input_denoiser != "identity" or r.dice > 0.0:
            continue
        line = (f"{r.target}: `{r.label}` seed {r.seed} scores Dice 0.000 on the test split: a failed run "
                "(no test voxel right), counted in its row's mean")
        if r.flag:
            line += ("; it is the gap's upper end, so the gap closed of every row on this target divides "
                     "by a lowered oracle mean: read the gap per seed (`scripts/summary_table.py --seed-gap "
                     "LOW HIGH --defined-gap-only`)")
        out.append(line + ".")
    return out


def findings(rows: Sequence[Row], records: Sequence[EvalRecord] = ()) -> list[str]:
    """Plain statements computed from the rows (and, given the ``records``, :func:`failed_run_findings`).
    A row wins or loses against its control, its parent or an evaluate-only baseline only where the paired
    95 % interval excludes zero; each names its network."""
    out = failed_run_findings(records)
    for target, target_rows in by_target(rows).items():
        for r in target_rows:
            if r.flag or r.leaky_selection:
                continue
            comparisons = [("control", r.control, r.vs_control), ("parent", r.init_from, r.vs_parent)]
            comparisons += [("baseline", b, i) for b, i in r.vs_baselines.items()]
            said = [_compared(kind, label, i) for kind, label, i in comparisons if i is not None and label]
            if not said:
                continue
            network = (f"{r.network_name} network, the method's reported one" if r.reported
                       else f"{r.network_name} network, not the method's reported one")
            out.append(f"{target}: `{r.display_label}` ({network}; {r.input_denoiser} input; Dice "
                       f"{r.dice_mean:.3f}): " + "; ".join(said) + ".")
        for r in target_rows:
            if discriminator_at_chance(r.diagnostics) and r.reported and r.input_denoiser == "identity":
                acc = r.diagnostics["domain_accuracy_tail"]
                tail = f"{TAIL_FRACTION * 100:.0f} %"
                out.append(f"{target}: `{r.label}`: discriminator at chance (mean domain accuracy {acc:.2f} "
                           f"over the last {tail} of steps): its adversarial term did not act.")
        so = {r.input_denoiser: r for r in target_rows
              if r.method == "source_only" and r.init_from is None and r.reported}
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
            out.append(f"{target}: highest mean Dice without target labels: `{best.display_label}` "
                       f"({best.network_name} network) with {best.input_denoiser} input "
                       f"({best.dice_mean:.3f}); a ranking of means, not a test.")
        seeds = min((r.n_seeds for r in target_rows), default=0)
        if seeds < 2:
            out.append(f"{target}: one seed only; differences between rows are untested.")
        else:
            out.append(f"{target}: {seeds} seeds; intervals are paired {LEVEL * 100:.0f} % Student-t "
                       "intervals over seeds (n − 1 degrees of freedom); a win or loss is claimed only where "
                       "the interval excludes 0.")
    return out


def write_results(out_dir: Path, results: SuiteResults, figures: Sequence[str] = ()) -> dict[str, Path]:
    """Write results.csv, results.json and results.md atomically; return their paths."""
    classes = results.classes
    rows = results.rows
    data = results.to_json()
    data.update({"classes": classes, "findings": findings(rows, results.records),
                 "rows": [r.flat(classes) for r in rows]})
    return {
        "csv": write_text(out_dir / "results.csv", csv_text(rows, classes)),
        "json": write_json(out_dir / "results.json", data),
        "md": write_text(out_dir / "results.md", markdown_document(results, figures)),
    }

"""A compact Markdown summary of chosen rows of finished benchmark suites, for pages such as docs/vox_uda.md.

Why: ``docs/results.md`` is generated, but the short per-method summaries other pages quote were copied from
it by hand, which is how numbers go stale or get mistyped. This script prints such a summary from the suites'
``results.json`` (the same :class:`~voxuda.bench.results.SuiteResults` the report is built from), with the
command that produced it, so a page can paste the output and name the command.

One line per (target, row label, network), for one test-time input:

    | target | row (network) | Dice | gap closed | vs control | vs <baseline> |

``--gap LOW HIGH`` adds a column with the gap closed between two other rows (e.g. the source-only and
oracle rows read out the same way as a method's readout row, so that a readout is not credited with what
it does to the ends of the gap).

``--versus-parent`` adds, for re-selecting rows (evaluate-only rows that chose their parent's checkpoints by
another criterion, docs/benchmark.md), the paired interval against the row whose runs they re-select
(``init_from``, the same network), and below the table the same differences pooled over every listed such
row's reported network, seed and target. A difference is minus the difference of the two criteria's
selection regret (both are measured against the same label-leaking choice).

``--regret`` adds each row's selection regret (Dice of the checkpoint the label-leaking criterion would have
chosen minus Dice of the chosen one, mean over seeds; ``-`` where not measured).

``--loss-tail KEY`` (repeatable; a key of :data:`voxuda.bench.diagnostics.LOSS_TAIL_KEYS`, ``seg``,
``seg_noisy`` or ``pseudo``, else a one-line error) adds that training loss over the last 20 % of each run's
steps (:data:`voxuda.bench.diagnostics.TAIL_FRACTION`), as the mean over seeds with the lowest and highest
seed: where the losses ended, the label-free reason a page may give for a loss's weight or form (``-`` for
rows that trained nothing or never logged it; needs a ``results.json`` written by a voxuda that records
``loss_tail``).

``--readout`` adds the foreground fraction each row's test-time decision aimed at on the unlabelled target
train split (``decision.target_fraction`` of its selected checkpoints: the user's range, the source fraction
or the EM estimate), as the mean over seeds with the lowest and highest seed, and the fraction argmax called
there; ``-`` for argmax rows, which record neither.

``--seed-gap LOW HIGH`` adds the gap closed per seed, ``(row - LOW) / (HIGH - LOW)`` with each seed's own
ends (reported networks), as its mean and 95 % t interval over seeds: how sure a "closes 90 %" is, which
the ratio of means does not say. A seed whose HIGH end does not score above its LOW end has no gap to
close and is left out of that column, which then says how many seeds it read (``(n=9 of 10)``).
``--defined-gap-only`` leaves such seeds out of every column of every row (the means, the gap closed, the
paired intervals) and names them under the table: a failed upper-bound run (an oracle that predicts no
foreground) otherwise lowers the oracle's mean and inflates every row's gap closed.

``--pool-seeds`` reads the ``--from`` folders as one suite whose seeds were trained in blocks, one folder
per block (:func:`voxuda.bench.report.pool_seeds`; a seed in two folders is an error); without it, several
folders add their rows side by side (different labels), the first folder's winning where they repeat.

``--plot PATH`` (with ``--seed-gap``) also draws those per-seed fractions, one panel per target, every seed
a dot, the mean with its interval, ``--bar`` (default 0.9, issue 15's) a dashed line.

Usage::

    python scripts/summary_table.py --from ../results/ablation --label vox_uda --label vox_uda_no_ngm \\
        --baseline source_only_align
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from voxuda.bench.diagnostics import LOSS_TAIL_KEYS, TAIL_FRACTION
from voxuda.bench.report import load_results, pool_seeds
from voxuda.bench.results import EvalRecord, Row, SuiteResults
from voxuda.bench.stats import PairedInterval, paired_differences, paired_interval, paired_t_interval
from voxuda.bench.tables import fmt_interval


def summary_rows(rows: Sequence[Row], labels: Sequence[str], denoiser: str,
                 targets: Sequence[str]) -> list[Row]:
    """The rows of ``labels`` (both networks) under test-time input ``denoiser``, by target, then label."""
    wanted = [r for r in rows if r.label in labels and r.input_denoiser == denoiser
              and (not targets or r.target in targets)]
    # suites that share runs (a parent, a control) list them each: keep the first folder's row
    first: dict[tuple[str, str, str], Row] = {}
    for r in wanted:
        first.setdefault((r.target, r.label, r.network), r)
    wanted = list(first.values())
    target_order = list(targets) or list(dict.fromkeys(r.target for r in rows))
    return sorted(wanted, key=lambda r: (target_order.index(r.target), list(labels).index(r.label),
                                         not r.reported))


def per_seed_dice(records: Sequence[EvalRecord], target: str, label: str, network: str,
                  denoiser: str) -> dict[int, float]:
    """Test Dice per seed of one row's selected checkpoint (the values its mean is taken over)."""
    return {r.seed: r.dice for r in records
            if (r.target, r.label, r.input_denoiser, r.checkpoint) == (target, label, denoiser, "selected")
            and (r.network or "") == network}


def versus(records: Sequence[EvalRecord], row: Row, other: str) -> PairedInterval | None:
    """The paired per-seed interval of ``row`` minus row ``other`` (the same network where it has one, else
    ``other``'s reported network): e.g. an ablated variant against the full method."""
    mine = per_seed_dice(records, row.target, row.label, row.network, row.input_denoiser)
    theirs = per_seed_dice(records, row.target, other, row.network, row.input_denoiser)
    if not theirs:
        reported = {r.network for r in records if r.label == other and r.reported}
        theirs = per_seed_dice(records, row.target, other, next(iter(reported), ""), row.input_denoiser)
    return paired_interval(mine, theirs) if theirs and row.label != other else None


def has_gap(low: float, high: float) -> bool:
    """Whether ``high`` scores above ``low`` by more than rounding: a gap closed is defined only then."""
    return high - low > 1e-9


def gap_between(all_rows: Sequence[Row], row: Row, low: str, high: str) -> float:
    """The fraction of the gap from row ``low`` to row ``high`` (reported networks, same target and test-time
    input) that ``row``'s mean Dice closes; NaN where either end is missing or the gap is empty."""
    ends = {r.label: r.dice_mean for r in all_rows if r.reported and r.target == row.target
            and r.input_denoiser == row.input_denoiser and r.label in (low, high)}
    if low not in ends or high not in ends or not has_gap(ends[low], ends[high]):
        return math.nan
    return (row.dice_mean - ends[low]) / (ends[high] - ends[low])


def versus_parent_differences(records: Sequence[EvalRecord], row: Row) -> list[float]:
    """Per-seed test Dice of a re-selecting ``row`` (evaluate-only, its selection not its parent's) minus
    that of the row whose runs it re-selects (same network); empty for other rows."""
    if row.mode != "evaluate_only" or not row.init_from:
        return []
    parent_selection = {r.selection for r in records if r.target == row.target and r.label == row.init_from}
    if parent_selection == {row.selection}:
        return []
    mine = per_seed_dice(records, row.target, row.label, row.network, row.input_denoiser)
    theirs = per_seed_dice(records, row.target, row.init_from, row.network, row.input_denoiser)
    return paired_differences(mine, theirs)


def seed_gap(records: Sequence[EvalRecord], row: Row, low: str, high: str) -> PairedInterval | None:
    """The gap closed per seed (:func:`seed_gap_fractions`) with its t interval over seeds."""
    return paired_t_interval(seed_gap_fractions(records, row, low, high))


def gap_ends(records: Sequence[EvalRecord], target: str, denoiser: str, low: str,
             high: str) -> tuple[dict[int, float], dict[int, float]]:
    """Per-seed test Dice of the two ends of a gap (their reported networks) on one target and input."""

    def reported_dice(label: str) -> dict[int, float]:
        network = next((r.network or "" for r in records if r.label == label and r.reported), "")
        return per_seed_dice(records, target, label, network, denoiser)

    return reported_dice(low), reported_dice(high)


def seed_gap_fractions(records: Sequence[EvalRecord], row: Row, low: str, high: str) -> list[float]:
    """The gap closed per seed (``(row - low) / (high - low)``, each seed against its own ends, the ends'
    reported networks), in seed order; seeds whose ends are missing, or whose ``high`` end does not score
    above its ``low`` end (no gap to close: e.g. a failed oracle run), are left out, and the table says how
    many were (:func:`markdown_summary`)."""
    mine = per_seed_dice(records, row.target, row.label, row.network, row.input_denoiser)
    lows, highs = gap_ends(records, row.target, row.input_denoiser, low, high)
    return [(mine[s] - lows[s]) / (highs[s] - lows[s]) for s in sorted(mine)
            if s in lows and s in highs and has_gap(lows[s], highs[s])]


def seeds_without_gap(records: Sequence[EvalRecord], denoiser: str, low: str,
                      high: str) -> list[tuple[str, int, float, float]]:
    """``(target, seed, low Dice, high Dice)`` for every seed whose ``high`` end does not score above its
    ``low`` end: there the gap closed is undefined (0 / 0 or a negative denominator), whatever a method
    scores. Why: an upper-bound run that failed (a collapsed oracle) would otherwise pull the oracle's mean
    down and inflate every row's ratio-of-means gap closed."""
    found = []
    for target in dict.fromkeys(r.target for r in records):
        lows, highs = gap_ends(records, target, denoiser, low, high)
        found += [(target, s, lows[s], highs[s]) for s in sorted(set(lows) & set(highs))
                  if not has_gap(lows[s], highs[s])]
    return found


def drop_seeds(results: SuiteResults, seeds: Sequence[tuple[str, int, float, float]]) -> SuiteResults:
    """``results`` without any record of the given (target, seed) pairs, its rows recomputed, so that every
    column of a table reads the same seeds."""
    gone = {(target, seed) for target, seed, _, _ in seeds}
    kept = [r for r in results.records if (r.target, r.seed) not in gone]
    return SuiteResults(meta=results.meta, records=kept, diagnostics=results.diagnostics,
                        label_order=results.label_order, denoiser_order=results.denoiser_order)


def loss_tail(diagnostics: Mapping[str, Mapping[str, object]], row: Row, key: str) -> str:
    """``0.350 [0.330, 0.366]``: the row's runs' ``loss_tail[key]`` (last 20 % of steps), mean over seeds
    [lowest, highest seed]; ``-`` where no run of the row logged it."""
    values = []
    for seed in row.seeds:
        tails = (diagnostics.get(f"{row.target}/{row.label}/seed{seed}") or {}).get("loss_tail")
        value = tails.get(key) if isinstance(tails, Mapping) else None
        if isinstance(value, (int, float)) and math.isfinite(value):
            values.append(float(value))
    if not values:
        return "-"
    return f"{sum(values) / len(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def readout(records: Sequence[EvalRecord], row: Row) -> str:
    """``3.10 % [2.88 %, 3.40 %] (argmax 2.20 %)``: the foreground fraction the row's decision aimed at on
    the target train split, mean [lowest, highest seed], and argmax's mean there; ``-`` for argmax rows."""
    decisions = [r.decision for r in records
                 if (r.target, r.label, r.input_denoiser, r.checkpoint) == (
                     row.target, row.label, row.input_denoiser, "selected")
                 and (r.network or "") == row.network and r.decision]
    aimed = [float(d["target_fraction"]) for d in decisions if "target_fraction" in d]
    argmax = [float(d["argmax_fraction"]) for d in decisions if "argmax_fraction" in d]
    if not aimed:
        return "-"
    text = f"{100 * sum(aimed) / len(aimed):.2f} % [{100 * min(aimed):.2f} %, {100 * max(aimed):.2f} %]"
    return text + (f" (argmax {100 * sum(argmax) / len(argmax):.2f} %)" if argmax else "")


def gap_percent(fraction: float) -> str:
    """``89.5 %``: one decimal, because issue 15's bar is 90 % and 89.5 % must not read as 90 %."""
    return "-" if math.isnan(fraction) else f"{100 * fraction:.1f} %"


def percent_interval(interval: PairedInterval | None) -> str:
    """``91 % [80 %, 101 %]`` (``91 % (1 seed)`` untested, ``-`` none)."""
    if interval is None:
        return "-"
    if not interval.tested:
        return f"{100 * interval.mean:.0f} % ({interval.n} seed)"
    return f"{100 * interval.mean:.0f} % [{100 * interval.low:.0f} %, {100 * interval.high:.0f} %]"


def markdown_summary(rows: Sequence[Row], baseline: str, *, records: Sequence[EvalRecord] = (),
                     versus_label: str | None = None, gap: tuple[str, str] | None = None,
                     all_rows: Sequence[Row] = (), seed_gap_ends: tuple[str, str] | None = None,
                     versus_parent: bool = False, regret: bool = False, loss_keys: Sequence[str] = (),
                     diagnostics: Mapping[str, Mapping[str, object]] | None = None,
                     with_readout: bool = False) -> str:
    """The summary table: Dice mean ± std over seeds, gap closed, paired intervals vs control and baseline,
    with ``versus_label`` vs that row (the paired per-seed differences, from ``records``), with ``gap``
    the gap closed between those two rows of ``all_rows`` and with ``seed_gap_ends`` the per-seed gap
    closed between those two rows (from ``records``) with its interval; with ``versus_parent`` each
    re-selecting row against its runs' own selection, pooled below the table; with ``loss_keys`` each
    key's training-loss tail from the runs' ``diagnostics`` (keyed by run id); ``with_readout``: the fraction
    each row's decision aimed at (:func:`readout`)."""
    extra = " selection regret |" if regret else ""
    extra += " vs the runs' own selection |" if versus_parent else ""
    extra += f" vs {versus_label} |" if versus_label else ""
    extra += f" gap closed ({gap[0]} to {gap[1]}) |" if gap else ""
    extra += (f" gap closed per seed ({seed_gap_ends[0]} to {seed_gap_ends[1]}), 95 % t |"
              if seed_gap_ends else "")
    tail = f"last {100 * TAIL_FRACTION:.0f} % of steps, mean [min, max] over seeds"
    extra += "".join(f" `{key}`, {tail} |" for key in loss_keys)
    if with_readout:
        extra += " readout: fraction aimed at on target train, mean [min, max] over seeds |"
    lines = [f"| target | row (network) | Dice | gap closed | vs control | vs {baseline} |{extra}",
             "|---|---|---|---|---|---|" + ("---|" if regret else "") + ("---|" if versus_parent else "")
             + ("---|" if versus_label else "") + ("---|" if gap else "")
             + ("---|" if seed_gap_ends else "") + "---|" * len(loss_keys)
             + ("---|" if with_readout else "")]
    pooled: list[float] = []
    for r in rows:
        network = f"{r.network_name}, reported" if r.reported else r.network_name
        closed = gap_percent(r.gap_closed)
        line = (f"| `{r.target}` | `{r.label}` ({network}) | {r.dice_mean:.3f} ± {r.dice_std:.3f} "
                f"(n={r.n_seeds}) | {closed} | {fmt_interval(r.vs_control)} | "
                f"{fmt_interval(r.vs_baselines.get(baseline))} |")
        if regret:
            line += f" {'-' if math.isnan(r.regret_mean) else f'{r.regret_mean:+.3f}'} |"
        if versus_parent:
            differences = versus_parent_differences(records, r)
            line += f" {fmt_interval(paired_t_interval(differences)) if differences else '-'} |"
            if r.reported:
                pooled += differences
        if versus_label:
            line += f" {fmt_interval(versus(records, r, versus_label))} |"
        if gap:
            other = gap_between(all_rows, r, *gap)
            line += f" {gap_percent(other)} |"
        if seed_gap_ends:
            per_seed = seed_gap(records, r, *seed_gap_ends)
            read = per_seed.n if per_seed is not None else 0
            count = f" (n={read} of {r.n_seeds})" if 0 < read < r.n_seeds else ""
            line += f" {percent_interval(per_seed)}{count} |"
        line += "".join(f" {loss_tail(diagnostics or {}, r, key)} |" for key in loss_keys)
        if with_readout:
            line += f" {readout(records, r)} |"
        lines.append(line)
    if versus_parent:
        interval = paired_t_interval(pooled)
        lines += ["", "Pooled over the re-selecting rows' reported networks, seeds and targets, against the "
                  f"runs' own selection: {fmt_interval(interval)} (n={len(pooled)})."]
    return "\n".join(lines)


def _summarise(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="folders", action="append", required=True,
                        help="a finished suite output folder (repeatable)")
    parser.add_argument("--pool-seeds", action="store_true",
                        help="the --from folders hold different seeds of one suite: read them as one "
                        "(each seed whole in one folder)")
    parser.add_argument("--label", action="append", required=True, help="a run label to list (repeatable)")
    parser.add_argument("--target", action="append", default=[], help="only these targets (repeatable)")
    parser.add_argument("--denoiser", default="identity", help="test-time input (default: identity)")
    parser.add_argument("--baseline", default="source_only_align", help="the evaluate-only baseline column")
    parser.add_argument("--versus", help="also a column of paired intervals against this row (e.g. the full "
                        "method of an ablation)")
    parser.add_argument("--gap", nargs=2, metavar=("LOW", "HIGH"),
                        help="also the gap closed between these two rows (e.g. readout-matched ends)")
    parser.add_argument("--versus-parent", action="store_true",
                        help="also each re-selecting row against its runs' own selection, and pooled")
    parser.add_argument("--regret", action="store_true", help="also each row's selection regret")
    parser.add_argument("--seed-gap", nargs=2, metavar=("LOW", "HIGH"),
                        help="also the gap closed per seed between these two rows, with its 95 %% t interval")
    parser.add_argument("--defined-gap-only", action="store_true",
                        help="with --seed-gap: leave out of every row the seeds where HIGH does not score "
                        "above LOW (no gap to close there, e.g. a failed oracle), and name them below")
    parser.add_argument("--plot", type=Path, metavar="PATH",
                        help="with --seed-gap: also a PNG of the gap closed per seed, row by row")
    parser.add_argument("--bar", type=float, default=0.9,
                        help="the line drawn in --plot, as a fraction of the gap (default 0.9)")
    parser.add_argument("--loss-tail", action="append", default=[], choices=LOSS_TAIL_KEYS,
                        help=f"also this training loss over the last {100 * TAIL_FRACTION:.0f} %% of steps "
                        "(repeatable)")
    parser.add_argument("--readout", action="store_true",
                        help="also the foreground fraction each row's decision aimed at on target train")
    args = parser.parse_args(argv)
    if args.plot is not None and not args.seed_gap:
        parser.error("--plot draws the gap closed per seed: add --seed-gap LOW HIGH")
    if args.defined_gap_only and not args.seed_gap:
        parser.error("--defined-gap-only leaves out seeds without a gap: add --seed-gap LOW HIGH")
    rows: list[Row] = []
    records: list[EvalRecord] = []
    diagnostics: dict[str, Mapping[str, object]] = {}
    pooled = [pool_seeds([Path(f) for f in args.folders])] if args.pool_seeds else []
    left_out: list[tuple[str, int, float, float]] = []
    loaded = pooled or [load_results(Path(folder)) for folder in args.folders]
    if args.defined_gap_only:
        without = seeds_without_gap([r for results in loaded for r in results.records], args.denoiser,
                                    *args.seed_gap)
        loaded = [drop_seeds(results, without) for results in loaded]
        left_out = [s for s in without if not args.target or s[0] in args.target]
    for results in loaded:
        rows += results.rows
        records += results.records
        for run_id, diag in results.diagnostics.items():
            diagnostics.setdefault(run_id, diag)  # the first folder's run, as for the rows
    found = summary_rows(rows, args.label, args.denoiser, args.target)
    missing = sorted(set(args.label) - {r.label for r in found})
    if missing:
        print(f"summary_table: no rows for {', '.join(missing)} in {', '.join(args.folders)}",
              file=sys.stderr)
        return 2
    gap = (args.gap[0], args.gap[1]) if args.gap else None
    seed_gap_ends = (args.seed_gap[0], args.seed_gap[1]) if args.seed_gap else None
    print(markdown_summary(found, args.baseline, records=records, versus_label=args.versus,
                           gap=gap, all_rows=rows, seed_gap_ends=seed_gap_ends,
                           versus_parent=args.versus_parent, regret=args.regret,
                           loss_keys=args.loss_tail, diagnostics=diagnostics,
                           with_readout=args.readout))
    if args.defined_gap_only:
        low, high = args.seed_gap
        named = "; ".join(f"`{t}` seed {s} ({low} {lo:.3f}, {high} {hi:.3f})" for t, s, lo, hi in left_out)
        print(f"\nLeft out of every row, because {high} does not score above {low} there (no gap to "
              f"close): {named or 'none'}.")
    if args.plot is not None and seed_gap_ends is not None:
        from voxuda.bench.plots import seed_gap_chart

        panels: dict[str, dict[str, list[float]]] = {}
        for r in found:
            name = f"{r.label} ({r.network_name})"
            panels.setdefault(r.target, {})[name] = seed_gap_fractions(records, r, *seed_gap_ends)
        seed_gap_chart(panels, args.plot, bar=args.bar,
                       title=f"gap closed per seed, {seed_gap_ends[0]} to {seed_gap_ends[1]}")
        print(f"\n(plot: {args.plot})", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The script's entry: a user's error (a folder without results.json, a mistyped path) is one line and the
    exit status the ``voxuda`` command gives it (``voxuda.cli.script_main``), not a traceback."""
    from voxuda.cli import script_main

    return script_main("summary_table", _summarise, argv)


if __name__ == "__main__":
    raise SystemExit(main())

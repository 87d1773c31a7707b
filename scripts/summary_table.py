"""A compact Markdown summary of chosen rows of finished benchmark suites, for pages such as docs/vox_uda.md.

Why: ``docs/results.md`` is generated, but the short per-method summaries other pages quote were copied from
it by hand, which is how numbers go stale or get mistyped. This script prints such a summary from the suites'
``results.json`` (the same :class:`~voxuda.bench.results.SuiteResults` the report is built from), with the
command that produced it, so a page can paste the output and name the command.

One line per (target, row label, network), for one test-time input:

    | target | row (network) | Dice | gap closed | vs control | vs <baseline> |

Usage::

    python scripts/summary_table.py --from ../results/ablation --label vox_uda --label vox_uda_no_ngm \\
        --baseline source_only_align
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from voxuda.bench.report import load_results
from voxuda.bench.results import Row
from voxuda.bench.tables import fmt_interval


def summary_rows(rows: Sequence[Row], labels: Sequence[str], denoiser: str,
                 targets: Sequence[str]) -> list[Row]:
    """The rows of ``labels`` (both networks) under test-time input ``denoiser``, by target, then label."""
    wanted = [r for r in rows if r.label in labels and r.input_denoiser == denoiser
              and (not targets or r.target in targets)]
    target_order = list(targets) or list(dict.fromkeys(r.target for r in rows))
    return sorted(wanted, key=lambda r: (target_order.index(r.target), list(labels).index(r.label),
                                         not r.reported))


def markdown_summary(rows: Sequence[Row], baseline: str) -> str:
    """The summary table: Dice mean ± std over seeds, gap closed, paired intervals vs control and baseline."""
    lines = [f"| target | row (network) | Dice | gap closed | vs control | vs {baseline} |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        network = f"{r.network_name}, reported" if r.reported else r.network_name
        gap = "-" if math.isnan(r.gap_closed) else f"{100 * r.gap_closed:.0f} %"
        lines.append(f"| `{r.target}` | `{r.label}` ({network}) | {r.dice_mean:.3f} ± {r.dice_std:.3f} "
                     f"(n={r.n_seeds}) | {gap} | {fmt_interval(r.vs_control)} | "
                     f"{fmt_interval(r.vs_baselines.get(baseline))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="folders", action="append", required=True,
                        help="a finished suite output folder (repeatable)")
    parser.add_argument("--label", action="append", required=True, help="a run label to list (repeatable)")
    parser.add_argument("--target", action="append", default=[], help="only these targets (repeatable)")
    parser.add_argument("--denoiser", default="identity", help="test-time input (default: identity)")
    parser.add_argument("--baseline", default="source_only_align", help="the evaluate-only baseline column")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for folder in args.folders:
        rows += load_results(Path(folder)).rows
    found = summary_rows(rows, args.label, args.denoiser, args.target)
    missing = sorted(set(args.label) - {r.label for r in found})
    if missing:
        print(f"summary_table: no rows for {', '.join(missing)} in {', '.join(args.folders)}",
              file=sys.stderr)
        return 2
    print(markdown_summary(found, args.baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

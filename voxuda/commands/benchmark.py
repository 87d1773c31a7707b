"""``voxuda benchmark``: run a benchmark or ablation suite and write tables and plots, or (``--from``)
combine finished suites' result folders into one generated document.

Heavy imports (torch, matplotlib) happen inside :func:`run`, so ``voxuda --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from voxuda.commands.options import add_progress_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="quick",
                        help="built-in suite (quick, paper, tiny, ...; see --list) or a suite TOML path")
    parser.add_argument("--list", action="store_true", help="list the built-in suites and exit")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the suite's)")
    parser.add_argument("--first-seed", type=int, default=0, metavar="K",
                        help="seeds K .. K+N-1 instead of 0 .. N-1: a later block of seeds, trained in its "
                        "own folder and pooled with `scripts/summary_table.py --pool-seeds` (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/<suite>)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder of simulated datasets, one sub-folder per preset, reused across suites "
                             "(default: $VOXUDA_DATA_ROOT or <out>/data)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a RunConfig key of every run (e.g. trainer.steps=50); repeatable")
    parser.add_argument("--suite-set", dest="suite_sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a suite default (e.g. selection=entropy); repeatable")
    parser.add_argument("--target", dest="targets", action="append", default=None, metavar="DOMAIN",
                        help="run only this target domain (repeatable; default: the suite's targets)")
    parser.add_argument("--only", action="append", default=None, metavar="LABEL",
                        help="run only these run labels (plus their warm-start parents); repeatable")
    parser.add_argument("--write-doc", type=Path, default=None, metavar="PATH",
                        help="also write the Markdown report to PATH (e.g. docs/results.md; an anatomy-track "
                             "suite writes the gap-anatomy document, e.g. docs/anatomy.md)")
    parser.add_argument("--from", dest="report_from", action="append", default=None, type=Path,
                        metavar="DIR",
                        help="train nothing: combine the results.json of these finished suite output folders "
                             "(repeatable) into --write-doc, tracks in order: appearance, content, anatomy")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--dry-run", action="store_true", help="print the expanded runs and exit")
    add_progress_argument(parser)  # --no-progress (--quiet still accepted)


def command_line(args: argparse.Namespace) -> str:
    """The invocation, rebuilt from the parsed arguments (recorded in results, so runs can be repeated)."""
    parts = ["voxuda", "benchmark", "--suite", str(args.suite)]
    first_seed = getattr(args, "first_seed", 0) or None
    for flag, value in (("--seeds", args.seeds), ("--first-seed", first_seed), ("--out", args.out),
                        ("--data-root", args.data_root), ("--write-doc", args.write_doc)):
        if value is not None:
            parts += [flag, str(value)]
    if getattr(args, "report_from", None):
        parts = ["voxuda", "benchmark"]
        for folder in args.report_from:
            parts += ["--from", shlex.quote(str(folder))]
        return " ".join(parts + ["--write-doc", str(args.write_doc)])
    for flag, values in (("--set", args.sets), ("--suite-set", args.suite_sets), ("--target", args.targets),
                         ("--only", args.only)):
        for value in values or []:
            parts += [flag, shlex.quote(str(value))]
    parts += [flag for flag, on in (("--no-plots", args.no_plots), ("--no-progress", args.no_progress)) if on]
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from voxuda.bench.suite import builtin_suites, load_suite

    if args.list:
        for name in builtin_suites():
            suite = load_suite(name)
            print(f"{name:20s} {suite.description}")
        return 0
    if args.report_from:
        return _report(args)
    suite = load_suite(args.suite, sets=args.suite_sets)
    out = args.out or Path("results") / suite.name
    data_root = args.data_root or Path(os.environ.get("VOXUDA_DATA_ROOT") or out / "data")
    from voxuda.bench.runner import BenchmarkOptions, check_runs, run_benchmark

    options = BenchmarkOptions(
        out_dir=out,
        data_root=data_root,
        seeds=args.seeds,
        first_seed=args.first_seed,
        targets=tuple(args.targets) if args.targets else None,
        only=tuple(args.only) if args.only else None,
        sets=tuple(args.sets),
        plots=not args.no_plots,
        progress=not args.no_progress,
        dry_run=args.dry_run,
        command=command_line(args),
        write_doc=args.write_doc,
    )
    check_runs(suite, options)  # every run's config, before the lock creates anything
    if args.dry_run:
        result = run_benchmark(suite, options)
    else:
        from voxuda.atomic import remove_stale_temporaries
        from voxuda.locks import output_lock

        with output_lock(out, command="voxuda benchmark"):  # (the data root is locked while simulated)
            remove_stale_temporaries(out, legacy=True)  # of a killed benchmark (run folders: the trainer's)
            result = run_benchmark(suite, options)
    if result.table:
        print(result.table)
    for note in result.notes:
        print(f"voxuda: note: {note}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    """``--from DIR ... --write-doc PATH``: one document from finished suites, nothing trained."""
    from voxuda.bench.report import load_results, write_document
    from voxuda.errors import ConfigError

    if args.write_doc is None:
        raise ConfigError("--from needs --write-doc PATH (the document to write, e.g. docs/results.md)")
    suites = [(Path(folder), load_results(Path(folder))) for folder in args.report_from]
    path = write_document(args.write_doc, suites)
    print(f"wrote {path} from {len(suites)} suite(s): {', '.join(r.name for _, r in suites)}")
    return 0

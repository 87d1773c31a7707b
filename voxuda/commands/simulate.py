"""``voxuda simulate``: write the embedded synthetic UDA benchmark (cached; deterministic by seed)."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="quick",
                        help="preset: tiny, quick, paper, *_mismatched, quick_source_snr10")
    parser.add_argument("--out", required=True, help="output folder (created; reused when already complete)")
    parser.add_argument("--seed", type=int, default=0, help="seed: the same seed gives byte-identical files")
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes for simulation"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--figure", help="also write a PNG of central slices of every domain here")


def run(args: argparse.Namespace) -> int:
    from voxuda.data.simulate import PRESETS, simulate_benchmark
    from voxuda.errors import ConfigError

    if args.preset not in PRESETS:
        import difflib

        hint = difflib.get_close_matches(args.preset, list(PRESETS), n=1)
        did = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"unknown preset {args.preset!r}{did} (presets: {', '.join(PRESETS)})")
    out = simulate_benchmark(
        args.preset, args.out, seed=args.seed, progress=not args.no_progress, workers=max(1, args.workers)
    )
    print(f"benchmark {args.preset!r} (seed {args.seed}) ready in {out}")
    if args.figure:
        from voxuda.data.figures import plot_domains

        plot_domains(out, args.figure)
        print(f"figure written to {args.figure}")
    return 0

"""``voxuda simulate``: write the embedded synthetic UDA benchmark (cached; deterministic by seed)."""

from __future__ import annotations

import argparse
import os

from voxuda.commands.options import add_progress_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        default="quick",
        help="a built-in preset (see --list-presets) or a .toml preset file (see --dump-preset)",
    )
    parser.add_argument("--out", help="output folder (created; reused when already complete)")
    parser.add_argument("--seed", type=int, default=0, help="seed: the same seed gives byte-identical files")
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes for simulation"
    )
    add_progress_argument(parser)
    parser.add_argument("--figure", help="also write a PNG of central slices of every domain here")
    parser.add_argument(
        "--dump-preset",
        metavar="PRESET",
        help="print PRESET (a built-in or a .toml file, resolved) as a complete preset file and exit",
    )
    parser.add_argument("--list-presets", action="store_true", help="list the built-in presets and exit")


def run(args: argparse.Namespace) -> int:
    from voxuda.data.simulate import simulate_benchmark
    from voxuda.data.simulate.presets import PRESETS, get_preset
    from voxuda.errors import ConfigError

    if args.list_presets:
        width = max(map(len, PRESETS))
        for name, p in PRESETS.items():
            print(f"{name:<{width}}  {', '.join(t.name for t in p.targets)}: {p.description}")
        return 0
    if args.dump_preset:
        from voxuda.data.simulate.preset_file import preset_to_toml

        print(preset_to_toml(get_preset(args.dump_preset)), end="")
        return 0
    if not args.out:
        raise ConfigError("voxuda simulate: --out is required (the folder to write the benchmark to)")
    _check_options(args)
    preset = get_preset(args.preset)  # one line for an unknown name or a bad preset file, before any work
    from voxuda.locks import output_lock

    with output_lock(args.out, command="voxuda simulate"):  # a second simulate into --out stops here
        out = simulate_benchmark(
            preset, args.out, seed=args.seed, progress=not args.no_progress, workers=max(1, args.workers)
        )
    print(f"benchmark {preset.name!r} (seed {args.seed}) ready in {out}")
    if args.figure:
        from voxuda.data.figures import plot_domains

        plot_domains(out, args.figure)
        print(f"figure written to {args.figure}")
    return 0


def _check_options(args: argparse.Namespace) -> None:
    """Options checked before anything is written, each error naming its option."""
    from voxuda.errors import ConfigError

    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: the seed must be a non-negative integer (e.g. --seed 0)")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: needs at least 1 worker process")

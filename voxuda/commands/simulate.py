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
    _add_tomogram_arguments(parser)


def _add_tomogram_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "whole tomogram",
        "--tomogram DOMAIN writes one crowded tomogram of a domain of --preset (built-in or file) into "
        "--out: tomogram.mrc, labels.mrc (class per voxel), particles.star (true centres) and tomogram.json",
    )
    add = group.add_argument
    add("--tomogram", metavar="DOMAIN", help="simulate one tomogram of this domain (e.g. dense_cell, source)")
    add(
        "--shape",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        default=[64, 128, 128],
        help="tomogram size in voxels (default 64 128 128)",
    )
    add("--particles", type=int, default=40, help="particles to place without overlap (default 40)")
    add(
        "--voxel-size",
        type=float,
        metavar="ANGSTROM",
        help="pixel size in Å (default: drawn from the domain's range)",
    )
    add("--polarity", choices=["dark", "bright"], help="protein contrast (default: the domain's)")
    add(
        "--imod-bytes",
        action="store_true",
        help="write the tomogram as IMOD unsigned bytes (mode 0, 0..255), as trimvol/newstack -mode 0 do",
    )


def run(args: argparse.Namespace) -> int:
    from voxuda.errors import ConfigError
    from voxuda.simulate import simulate_benchmark
    from voxuda.simulate.presets import PRESETS, get_preset

    if args.list_presets:
        width = max(map(len, PRESETS))
        for name, p in PRESETS.items():
            print(f"{name:<{width}}  {', '.join(t.name for t in p.targets)}: {p.description}")
        return 0
    if args.dump_preset:
        from voxuda.simulate.preset_file import preset_to_toml

        print(preset_to_toml(get_preset(args.dump_preset)), end="")
        return 0
    _check_options(args)
    if args.tomogram:
        return _run_tomogram(args)
    _refuse_tomogram_only_options(args)
    if not args.out:
        raise ConfigError("voxuda simulate: --out is required (the folder to write the benchmark to)")
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


def _refuse_tomogram_only_options(args: argparse.Namespace) -> None:
    """Options that shape a whole tomogram mean nothing for a benchmark: say so instead of ignoring them."""
    from voxuda.errors import ConfigError

    given = [
        flag
        for flag, value in (
            ("--voxel-size", args.voxel_size),
            ("--polarity", args.polarity),
            ("--imod-bytes", args.imod_bytes),
        )
        if value
    ]
    if given:
        raise ConfigError(f"voxuda simulate: {', '.join(given)} only apply with --tomogram DOMAIN")


def _run_tomogram(args: argparse.Namespace) -> int:
    """``--tomogram DOMAIN``: one whole tomogram of a domain of ``--preset`` (a built-in or a file)."""
    from voxuda.errors import ConfigError
    from voxuda.simulate.presets import get_preset
    from voxuda.simulate.tomogram import simulate_tomogram

    if not args.out:
        raise ConfigError("voxuda simulate --tomogram: --out is required (the folder to write it to)")
    preset = get_preset(args.preset)
    spec = next((d for d in preset.domains if d.name == args.tomogram), None)
    if spec is None:
        names = ", ".join(d.name for d in preset.domains)
        raise ConfigError(
            f"--tomogram {args.tomogram!r}: preset {preset.name!r} has no such domain (it has {names})"
        )
    from voxuda.locks import output_lock

    with output_lock(args.out, command="voxuda simulate --tomogram"):
        result = simulate_tomogram(
            spec,
            args.out,
            shape=tuple(args.shape),
            particles=args.particles,
            voxel_size=args.voxel_size,
            polarity=args.polarity,
            imod_bytes=args.imod_bytes,
            seed=args.seed,
            progress=not args.no_progress,
        )
    z, y, x = args.shape
    kind = "IMOD bytes" if args.imod_bytes else "float32"
    state = "reused" if result.reused else "ready"
    print(
        f"tomogram {spec.name!r} {z}x{y}x{x} at {result.voxel_size:.2f} A/px, {result.polarity} protein "
        f"({kind}), {result.particles} of {result.requested} particles placed (seed {args.seed}): "
        f"{state} in {result.folder}"
    )
    return 0

"""Time generation of a simulator preset (default ``quick``) with 2 worker processes.

The issue requires the ``quick`` preset in under 60 s on 2 CPU cores. Usage::

    python benchmarks/bench_simulate.py [--preset quick] [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from voxuda.simulate.presets import get_preset
from voxuda.simulate.writer import simulate_benchmark


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the worker pool)."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    preset = get_preset(args.preset)
    n = sum(c for d in preset.domains for _, c in d.splits)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench"
        t0 = time.perf_counter()
        c0 = _cpu()
        simulate_benchmark(args.preset, out, seed=args.seed, progress=False, workers=args.workers)
        dt = time.perf_counter() - t0
        cpu = _cpu() - c0
        t1 = time.perf_counter()
        simulate_benchmark(args.preset, out, seed=args.seed, progress=False, workers=args.workers)
        cached = time.perf_counter() - t1
    print(
        f"preset={args.preset} volumes={n} workers={args.workers} time={dt:.1f}s "
        f"({1e3 * dt / n:.1f} ms/volume) cpu={cpu:.1f}s (all processes; wall time rises if the cores are "
        f"shared) cached_rerun={cached * 1e3:.1f}ms"
    )


if __name__ == "__main__":
    main()

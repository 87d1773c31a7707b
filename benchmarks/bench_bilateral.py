"""Throughput of the bilateral backends next to SimpleITK, measured in the same run.

Prints Mvox/s (million output voxels per second, median of repeats) for every available backend and for
SimpleITK's BilateralImageFilter at the same window, on a 128^3 float32 volume with 2 threads, plus the
Vox-UDA IBF cost on a 16 x 1 x 32^3 batch next to one Vox-UDA training step on the same batch (the
issue's "< 10 % of a step" target).  Ratios matter more than absolute numbers on a shared machine.

    python benchmarks/bench_bilateral.py [--size 128] [--threads 2] [--repeats 5] [--step-widths 16,32,64,128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import voxuda.ops as ops


def median_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    fn()  # warm-up (and CUDA compilation)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sitk_runner(vol: np.ndarray, radius: int, threads: int) -> Callable[[], object] | None:
    try:
        import SimpleITK as sitk
    except ImportError:
        return None
    # ITK's radius is ceil(2.5 sigma_d): sigma_d = radius / 2.5 gives exactly the requested window.
    f = sitk.BilateralImageFilter()
    f.SetDomainSigma(radius / 2.5)
    f.SetRangeSigma(1.0)
    f.SetNumberOfWorkUnits(threads)
    img = sitk.GetImageFromArray(vol)
    return lambda: f.Execute(img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--radii", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--step-widths", default="16,32,64,128",
                    help="U-Net widths of the Vox-UDA step the IBF is compared with ('' skips the step)")
    ap.add_argument("--step-repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vol = np.random.default_rng(0).standard_normal((args.size,) * 3).astype(np.float32)
    nvox = vol.size / 1e6
    print(f"volume {args.size}^3 float32, {args.threads} threads, median of {args.repeats}, "
          f"torch {torch.__version__}")
    for st in ops.available_backends():
        print(f"  backend {st.name:6s} priority {st.priority:4d} available={st.available} ({st.reason})")

    for r in args.radii:
        k = 2 * r + 1
        rates: dict[str, float] = {}
        sitk_fn = sitk_runner(vol, r, args.threads)
        if sitk_fn is not None:
            rates["simpleitk"] = nvox / median_seconds(sitk_fn, max(1, args.repeats // 2))
        for st in ops.available_backends():
            if not st.available:
                continue
            dev = "cuda" if st.name == "cupy" else "cpu"
            x = torch.from_numpy(vol)[None, None].to(dev)
            sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
            fn = lambda x=x, name=st.name, r=r: ops.bilateral3d(  # noqa: E731
                x, radius=r, sigma_spatial=r / 2.5, sigma_range=1.0, backend=name
            )
            rates[st.name] = nvox / median_seconds(fn, args.repeats, sync)
        base = rates.get("simpleitk")
        print(f"\nwindow {k}^3:")
        for name, rate in rates.items():
            ratio = f"  {rate / base:6.2f}x SimpleITK" if base else ""
            print(f"  {name:10s} {rate:9.2f} Mvox/s{ratio}")

    # The Vox-UDA use: IBF (3^3, Laplacian-gradient guide) on a teacher batch of 16 x 1 x 32^3 ...
    step_s = None
    if args.step_widths:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_methods import time_method

        widths = [int(w) for w in args.step_widths.split(",")]
        step_s = time_method("vox_uda", widths, 32, 16, args.step_repeats)
        print(f"\nVox-UDA training step, U-Net {widths}, batch 16 x 1 x 32^3 (IBF on the auto backend, "
              f"{ops.last_backend_used()}): {step_s * 1e3:.0f} ms")
    batch = torch.randn(16, 1, 32, 32, 32)
    for st in ops.available_backends():
        if not st.available:
            continue
        b = batch.to("cuda" if st.name == "cupy" else "cpu")
        sync = torch.cuda.synchronize if b.is_cuda else (lambda: None)
        fn = lambda b=b, name=st.name: ops.improved_bilateral3d(b, backend=name)  # noqa: E731
        t = median_seconds(fn, args.repeats, sync)
        rate = batch.numel() / t / 1e6
        share = f", {100 * t / step_s:.1f} % of the Vox-UDA step" if step_s else ""
        print(f"IBF 16x1x32^3 on {st.name}: {t * 1e3:.1f} ms per batch ({rate:.1f} Mvox/s){share}")


if __name__ == "__main__":
    main()

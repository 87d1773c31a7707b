"""Throughput of the bilateral backends next to SimpleITK and the machine's ceiling, measured in the same run.

Prints Mvox/s (million output voxels per second) at each window on a float32 volume for: SimpleITK's
BilateralImageFilter, the torch backend, the previous numba kernel (``_bilateral_numba_previous.py``), the
current numba backend and the cupy backend where a GPU is visible; then the compute ceiling of the window
from an FMA-throughput probe and an exp-throughput probe run in the same rounds, and ratios.

The machine is shared, so every round runs each contender once (in a rotated order), and the reported
figures are medians over rounds: Mvox/s medians, and for each ratio the median of the per-round ratios
(both sides of a ratio then saw the same load).  ``--json`` writes everything, with the machine, versions
and command, for ``benchmarks/bilateral_report.py`` (which renders the docs/performance.md section).

Ceiling: a tap of the filter needs, besides its exp, four vector operations that each take an FMA slot
(guide difference, square-and-subtract of the log weight, normaliser add, numerator FMA), so a voxel at a
k^3 window costs at least k^3 * (4 / FMA rate + 1 / exp rate); the probes measure those rates with numba
kernels on L1-resident data, on all threads, at the kernel's vector width.  The exp probe runs the
kernel's own inlined float32 2**w (the fastest exp reachable from numba here: the libm call does not
vectorise), so the ceiling is that of this exp; a hardware with a cheaper exp would raise it.

    python benchmarks/bench_bilateral.py [--size 128] [--threads 2] [--rounds 7] [--radii 2 3]
        [--json out.json] [--ibf] [--step-widths 16,32,64,128]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before numba: numba's OpenMP layer initialised first slowed torch's threads 8.5x

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's voxuda, not an installed one

import voxuda.ops as ops  # noqa: E402
from voxuda.ops.backends.base import FilterParams  # noqa: E402

#: vector operations per tap outside the exp (see the module docstring)
FMA_SLOTS_PER_TAP = 4
#: chained FMAs per element in the FMA probe (independent across elements, so OoO overlaps them)
FMA_CHAIN = 16


Probe = tuple[Callable[[], tuple[float, float]], float]


def clocked(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call; the CPU seconds are kept in the JSON only.

    Rates are computed from wall time: CPU time divided by the threads was tried as a load-free clock,
    but under load it put the FMA probe above the CPU's FMA peak (the process clock undercounts threads
    sharing a core), so it is not used for any figure.
    """
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def numba_probes() -> tuple[Probe, Probe] | None:
    """(FMA probe, exp probe): each a call returning (wall s, CPU s) and the lane-operations it performs."""
    try:
        import numba
    except ImportError:
        return None
    from voxuda.ops.backends._numba_kernels import FASTMATH, prefer_512_bit_vectors, weight
    from voxuda.ops.backends.numba_backend import _COEFFICIENTS, _LOG2_FLOOR

    @numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False)
    def fma_probe(a: Any, reps: int) -> None:
        for t in numba.prange(a.shape[0]):
            prefer_512_bit_vectors()
            row = a[t]
            m = np.float32(0.5)
            c = np.float32(0.25)
            for _ in range(reps):
                for i in range(row.shape[0]):
                    v = row[i]
                    for _j in range(FMA_CHAIN):
                        v = v * m + c
                    row[i] = v

    @numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False)
    def exp_probe(w: Any, out: Any, reps: int, floor: Any, coef: Any) -> None:
        poly = (coef[0], coef[1], coef[2], coef[3], coef[4], coef[5])
        for t in numba.prange(w.shape[0]):
            prefer_512_bit_vectors()
            src = w[t]
            dst = out[t]
            for _ in range(reps):
                for i in range(src.shape[0]):
                    dst[i] = weight(src[i], floor, poly)

    threads = numba.get_num_threads()
    # 4096 float32 per thread: 16 KiB in and out, inside L1; enough rows for one per thread
    a = np.random.default_rng(1).random((threads, 4096), dtype=np.float32)
    w = -np.random.default_rng(2).random((threads, 4096), dtype=np.float32) * 20
    out = np.empty_like(w)
    floor = np.float32(_LOG2_FLOOR[np.dtype(np.float32)])
    coef = _COEFFICIENTS.astype(np.float32)

    def fma_seconds(reps: int) -> tuple[float, float]:
        return clocked(lambda: fma_probe(a, reps))

    def exp_seconds(reps: int) -> tuple[float, float]:
        return clocked(lambda: exp_probe(w, out, reps, floor, coef))

    fma_seconds(1)
    exp_seconds(1)  # compile first: a rate with the compile in it would size the probes far too small
    # size each probe call to about 0.15 s, like one filter call at 128^3: a much shorter probe runs in
    # the gaps between the neighbours' time slices on a shared machine and overstates the ceiling
    fma_reps = max(1, int(0.15 / min(fma_seconds(1000)[0] for _ in range(3)) * 1000))
    exp_reps = max(1, int(0.15 / min(exp_seconds(1000)[0] for _ in range(3)) * 1000))
    return (
        (lambda: fma_seconds(fma_reps), a.size * fma_reps * FMA_CHAIN),
        (lambda: exp_seconds(exp_reps), w.size * exp_reps),
    )


def sitk_runner(vol: np.ndarray, radius: int, threads: int) -> Callable[[], object] | None:
    try:
        import SimpleITK as sitk
    except ImportError:
        return None
    # ITK's radius is ceil(2.5 sigma_d): sigma_d = radius / 2.5 gives exactly the requested window.
    f = sitk.BilateralImageFilter()
    f.SetDomainSigma(radius / 2.5)
    f.SetRangeSigma(1.0)
    f.SetNumberOfWorkUnits(threads)  # SetNumberOfThreads is ignored
    img = sitk.GetImageFromArray(vol)
    return lambda: f.Execute(img)


def contenders(vol: np.ndarray, radius: int, threads: int) -> dict[str, Callable[[], object]]:
    """Name -> zero-argument call filtering ``vol`` at this radius (sigma_d = radius / 2.5, sigma_r = 1)."""
    runs: dict[str, Callable[[], object]] = {}
    sitk_fn = sitk_runner(vol, radius, threads)
    if sitk_fn is not None:
        runs["simpleitk"] = sitk_fn
    x = torch.from_numpy(vol)[None, None]
    params = FilterParams(radius=radius, sigma_spatial=radius / 2.5, sigma_range=1.0)
    for st in ops.available_backends():
        if not st.available:
            continue
        if st.name == "numba":
            sys.path.insert(0, str(HERE))
            from _bilateral_numba_previous import previous_numba_bilateral

            runs["numba_previous"] = lambda: previous_numba_bilateral(x, x, params)
        dev = "cuda" if st.name == "cupy" else "cpu"
        xd = x.to(dev)

        def run(xd: torch.Tensor = xd, name: str = st.name) -> object:
            out = ops.bilateral3d(
                xd, radius=radius, sigma_spatial=radius / 2.5, sigma_range=1.0, backend=name
            )
            if xd.is_cuda:
                torch.cuda.synchronize()
            return out

        runs[st.name] = run
        if st.name == "torch" and torch.cuda.is_available():
            # the same torch backend on the GPU: the reference the cupy kernel must beat on that device
            xc = x.to("cuda")
            runs["torch_cuda"] = lambda xc=xc: run(xc)
    return runs


def interleaved(runs: dict[str, Callable[[], tuple[float, float]]], rounds: int) -> dict[str, list[tuple]]:
    """(wall s, CPU s) per call for every contender, one call each per round, the order rotated."""
    names = list(runs)
    times: dict[str, list[tuple]] = {n: [] for n in names}
    for i in range(rounds):
        for name in names[i % len(names):] + names[: i % len(names)]:
            times[name].append(runs[name]())
    return times


RATIO_PAIRS = [("numba", "numba_previous"), ("numba", "simpleitk"), ("numba_previous", "simpleitk"),
               ("torch", "simpleitk"), ("numba", "torch"), ("numba", "ceiling"), ("cupy", "simpleitk"),
               ("cupy", "torch_cuda"), ("cupy", "numba")]


def summarise(rates: dict[str, list[float]]) -> dict[str, Any]:
    return {
        "mvox_s": {n: statistics.median(r) for n, r in rates.items()},
        "ratios": {
            f"{a}/{b}": statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))
            for a, b in RATIO_PAIRS if a in rates and b in rates
        },
        "rounds": rates,
    }


def measure_window(vol: np.ndarray, radius: int, args: argparse.Namespace, probes: Any) -> dict[str, Any]:
    """Rates per round (wall clock), their medians and the medians of per-round ratios."""
    k = 2 * radius + 1
    taps = k**3
    runs = contenders(vol, radius, args.threads)
    for fn in runs.values():
        fn()  # warm-up: numba loads or compiles, cupy compiles
    nvox = vol.size / 1e6
    calls = {name: (lambda fn=fn: clocked(fn)) for name, fn in runs.items()}
    work = {name: nvox for name in runs}
    if probes is not None:
        (calls["probe_fma"], work["probe_fma"]), (calls["probe_exp"], work["probe_exp"]) = probes
    times = interleaved(calls, args.rounds)
    result: dict[str, Any] = {"window": k, "taps": taps}
    result["cpu_s_rounds"] = {n: [t[1] for t in ts] for n, ts in times.items()}
    for clock, index, per in (("wall", 0, 1.0),):
        rates = {n: [work[n] / (t[index] / per) for t in ts] for n, ts in times.items()}
        if probes is not None:
            fma, exp = rates.pop("probe_fma"), rates.pop("probe_exp")
            rates["ceiling"] = [
                1e-6 / (taps * (FMA_SLOTS_PER_TAP / f + 1.0 / e)) for f, e in zip(fma, exp, strict=True)
            ]
            result[f"probe_{clock}"] = {
                "fma_per_s": statistics.median(fma), "exp_per_s": statistics.median(exp),
                "fma_slots_per_tap": FMA_SLOTS_PER_TAP, "exps_per_tap": 1,
            }
        result[clock] = summarise(rates)
    return result


def _synced(out: torch.Tensor) -> torch.Tensor:
    """Wait for the GPU before the clock stops (CUDA calls return before their kernels finish)."""
    if out.is_cuda:
        torch.cuda.synchronize()
    return out


def ibf_and_step(args: argparse.Namespace) -> dict[str, Any]:
    """The Vox-UDA use: IBF (3^3, Laplacian-gradient guide) on a 16 x 1 x 32^3 teacher batch, next to one
    Vox-UDA training step on that batch (the issue's "< 10 % of a step" target)."""
    out: dict[str, Any] = {}
    if args.step_widths:
        sys.path.insert(0, str(HERE))
        from bench_methods import time_method

        widths = [int(w) for w in args.step_widths.split(",")]
        out["vox_uda_step_s"] = time_method("vox_uda", widths, 32, 16, args.step_repeats)
        out["step_widths"] = widths
    batch = torch.randn(16, 1, 32, 32, 32)
    runs: dict[str, Callable[[], tuple[float, float]]] = {}
    placements = [(st.name, st.name, "cuda" if st.name == "cupy" else "cpu")
                  for st in ops.available_backends() if st.available]
    if torch.cuda.is_available():
        placements.append(("torch_cuda", "torch", "cuda"))  # the cupy kernel's same-device reference
    for label, name, dev in placements:
        b = batch.to(dev)
        runs[label] = lambda b=b, name=name: clocked(
            lambda: _synced(ops.improved_bilateral3d(b, backend=name))
        )
    for fn in runs.values():
        fn()
    times = interleaved(runs, args.rounds)
    out["ibf_batch_s"] = {n: statistics.median(t[0] for t in ts) for n, ts in times.items()}
    out["ibf_batch_cpu_s_per_thread"] = {
        n: statistics.median(t[1] / args.threads for t in ts) for n, ts in times.items()
    }
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("numba", "llvmlite", "SimpleITK"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    try:
        import llvmlite.binding as ll

        versions["llvm_cpu"] = ll.get_host_cpu_name()
    except ImportError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
                            "versions": versions}
    if torch.cuda.is_available():
        info["gpu"] = f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
        try:
            info["versions"]["cupy"] = __import__("cupy").__version__
        except ImportError:
            info["versions"]["cupy"] = None
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians over rounds)")
    ap.add_argument("--radii", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--json", type=Path, help="write all results here (input of bilateral_report.py)")
    ap.add_argument("--ibf", action="store_true", help="also time the IBF on a 16 x 1 x 32^3 batch")
    ap.add_argument("--step-widths", default="",
                    help="with --ibf: U-Net widths of a Vox-UDA step to compare with ('' skips the step)")
    ap.add_argument("--step-repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    vol = np.random.default_rng(0).standard_normal((args.size,) * 3).astype(np.float32)
    info = machine()
    report: dict[str, Any] = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": info, "size": args.size, "threads": args.threads, "rounds": args.rounds,
        "load_average_before": os.getloadavg(),
        "backends": [
            {"name": s.name, "available": s.available, "reason": s.reason} for s in ops.available_backends()
        ],
    }
    print(f"volume {args.size}^3 float32, {args.threads} threads, medians of {args.rounds} interleaved "
          f"rounds; {info['cpu']}; torch {torch.__version__}, numba {info['versions']['numba']}")
    probes = numba_probes()
    report["windows"] = []
    for r in args.radii:
        res = measure_window(vol, r, args, probes)
        report["windows"].append(res)
        for clock, label in (("wall", "wall clock"),):
            part = res[clock]
            print(f"\nwindow {res['window']}^3, {label}:")
            for name, rate in part["mvox_s"].items():
                ratio = part["ratios"].get(f"{name}/simpleitk")
                print(f"  {name:15s} {rate:9.2f} Mvox/s" + (f"  {ratio:6.2f}x SimpleITK" if ratio else ""))
            pr = res.get(f"probe_{clock}")
            if pr:
                print(f"  probes: {pr['fma_per_s'] / 1e9:.1f} G lane-FMA/s, "
                      f"{pr['exp_per_s'] / 1e9:.2f} G exp/s "
                      f"-> ceiling {res['taps']} x ({FMA_SLOTS_PER_TAP} FMA + 1 exp) per voxel")
            for key, value in part["ratios"].items():
                print(f"  ratio {key:28s} {value:6.2f}")
    if args.ibf:
        report["ibf"] = ibf_and_step(args)
        for name, t in report["ibf"]["ibf_batch_s"].items():
            step = report["ibf"].get("vox_uda_step_s")
            share = f", {100 * t / step:.1f} % of a Vox-UDA step ({step * 1e3:.0f} ms)" if step else ""
            print(f"IBF 16x1x32^3 on {name}: {t * 1e3:.1f} ms per batch{share}")
    report["load_average_after"] = os.getloadavg()
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(args.json)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

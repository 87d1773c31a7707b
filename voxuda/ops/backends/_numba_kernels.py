"""numba code of the CPU bilateral backend (see :mod:`voxuda.ops.backends.numba_backend` for the design).

Imported only when the numba backend runs: it imports numba at module level so that the kernel is a plain
module-level function, which numba can cache on disk (a kernel built inside a factory function was saved
but never found again, costing a 2.5 s compile in every process).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


def keep_numba_off_openmp() -> None:
    """Make numba's parallel kernels run on numba's own ``workqueue`` threads instead of a second OpenMP
    runtime beside torch's.

    With numba's default ``omp`` layer, once a numba kernel had run, torch's 1-thread training steps in the
    same process ran about 5-7x slower; with ``workqueue`` they did not slow down (docs/performance.md,
    "numba threading layer"; at 2 threads no slow-down was seen on ``omp`` either). numba picks its layer at
    its first parallel call, so this runs when this module is imported (before any kernel here runs: it is
    what every caller of a numba bilateral kernel imports, in training, evaluation and segmentation alike),
    and never overrides a layer the user chose with ``NUMBA_THREADING_LAYER``.
    """
    import os

    from numba.np.ufunc import parallel

    if "NUMBA_THREADING_LAYER" not in os.environ and not getattr(parallel, "_is_initialized", True):
        numba.config.THREADING_LAYER = "workqueue"


keep_numba_off_openmp()

#: fast-math without "arcp" and "afn": with them LLVM divided by a reciprocal estimate in the vectorised
#: body of a row but exactly in its scalar remainder, so a voxel's last bit depended on where its row was
#: cut and chunked whole-tomogram filtering no longer equalled the unchunked filter bit for bit.  No
#: "reassoc" either: it would fold the round-to-integer trick of :func:`weight` ``(w + M) - M`` to ``w``.
FASTMATH = {"nnan", "ninf", "nsz", "contract"}

#: 1.5 * 2**23 + 127: adding it to a float32 in [-2**22, 2**22] rounds the value to an integer that lands in
#: the low mantissa bits, already biased by 127, so ``bits << 23`` is the float32 2**round(w).
ROUND_MAGIC = 12583039.0


@intrinsic
def _as_float32(typingctx: Any, bits: Any) -> Any:
    """Reinterpret int32 bits as a float32 (a register move, so the loop stays vectorised)."""
    sig = types.float32(types.int32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _as_int32(typingctx: Any, value: Any) -> Any:
    """Reinterpret float32 bits as an int32."""
    sig = types.int32(types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def prefer_512_bit_vectors(typingctx: Any) -> Any:
    """Mark the function being compiled ``"prefer-vector-width"="512"`` (a no-op statement otherwise).

    LLVM's tuning for Intel server CPUs (skylake-avx512 to emeraldrapids) prefers 256-bit vectors to avoid
    the clock drop of 512-bit code on older parts; numba only lets one change that for the whole process
    (``NUMBA_CPU_FEATURES``).  This kernel is bound by vector arithmetic, so twice the lanes per
    instruction pays: called inside the ``prange`` body it tags just the parallel worker function (5^3 on
    128^3, 2 threads: 1.2x over the same loop at 256 bits).  On CPUs without AVX-512 the attribute asks for
    more than the hardware has and LLVM keeps its widest legal vectors.  llvmlite's attribute set rejects
    names it does not know, so the string attribute is added through ``set.add``.
    """
    sig = types.none()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return sig, codegen


def weight(w: Any, floor: Any, c: Any) -> Any:
    """``2 ** max(w, floor)`` (``2 ** w`` when ``floor`` is None: the host has shown that no log2 weight
    of the call falls below the floor, and the max costs one of the ~15 vector operations of a tap: 1.07x
    at 5^3).  The compiled versions below are chosen by dtype and by floor's type at compile time."""
    return 2.0 ** (w if floor is None else max(w, floor))


@numba.njit(inline="always", fastmath=FASTMATH)
def _exp2_polynomial(w: Any, c: Any) -> Any:
    # 2**w = 2**n * 2**f, n = round(w), f in [-0.5, 0.5]: three adds give n (biased, in the low bits of t)
    # and f; a degree-5 polynomial gives 2**f; a shift puts n into the exponent field.
    t = w + np.float32(ROUND_MAGIC)
    f = w - (t - np.float32(ROUND_MAGIC))
    poly = c[0] + f * (c[1] + f * (c[2] + f * (c[3] + f * (c[4] + f * c[5]))))
    return poly * _as_float32(_as_int32(t) << 23)


@overload(weight, inline="always", jit_options={"fastmath": FASTMATH})
def _weight_impl(w: Any, floor: Any, c: Any) -> Any:
    # (the implementations' parameters must be annotated exactly like ``weight``'s for numba to accept them)
    unclamped = isinstance(floor, types.NoneType)
    if isinstance(w, types.Float) and w.bitwidth == 32:
        if unclamped:

            def polynomial(w: Any, floor: Any, c: Any) -> Any:
                return _exp2_polynomial(w, c)

            return polynomial

        def clamped_polynomial(w: Any, floor: Any, c: Any) -> Any:
            return _exp2_polynomial(max(w, floor), c)

        return clamped_polynomial
    if unclamped:

        def exact(w: Any, floor: Any, c: Any) -> Any:
            return math.exp2(w)  # type: ignore[attr-defined]  # Python 3.11+ (the mypy target is 3.10)

        return exact

    def clamped_exact(w: Any, floor: Any, c: Any) -> Any:
        return math.exp2(max(w, floor))  # type: ignore[attr-defined]  # Python 3.11+, as above

    return clamped_exact


@numba.njit(fastmath=FASTMATH, boundscheck=False, cache=True)
def exp2_rows(w: Any, out: Any, floor: float, coef: Any) -> None:
    """``out[i] = weight(w[i])`` with the kernel's own compiled weight: the accuracy tests and the
    throughput probe of ``benchmarks/bench_bilateral.py`` measure exactly what the filter runs."""
    prefer_512_bit_vectors()
    poly = (coef[0], coef[1], coef[2], coef[3], coef[4], coef[5])
    lo = w.dtype.type(floor)
    for i in range(w.shape[0]):
        out[i] = weight(w[i], lo, poly)


#: Output voxels per parallel job (4 KiB of float32 per accumulator, so a job's numerator, normaliser and
#: weight buffers stay in L1).  Measured on 2 threads: 1024 and 2048 tie; 4096 and longer lose 15 % at
#: 128^3 (the buffers leave L1).
PIECE = 1024


@numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False, cache=True)
def bilateral_pieces(xp: Any, gp: Any, out: Any, r: int, spatial: Any, floor: Any, coef: Any) -> None:
    """Joint bilateral filter of replicate-padded ``xp`` (N, C, D+2r, H+2r, W+2r) into ``out``.

    ``gp`` is the padded guide already scaled so that the log2 weight of a tap is ``spatial[tap] -
    |gp_p - gp_q|^2``; ``floor`` is the lowest log2 weight (None: no clamp needed, see ``weight``);
    ``coef`` the 2**f polynomial.

    A job is a run of whole output rows of one plane, taken as one contiguous span of the flattened padded
    volume (the rows' halo columns ride along and are dropped at the end), so every pass is one long loop
    over contiguous slices that vectorises with no per-row remainder, and the per-pass setup is paid once
    per ~1000 voxels (16 x 32^3 at 5^3: 41 -> 49 Mvox/s over one job per row).  The halo columns cost
    (W + 2r) / W extra work.

    One guide and one image channel (the classic filter): each pass handles 5, 3, 2 or 1 neighbouring
    taps of a window row (a 5^3 window: one pass per row; 7^3: 5 + 2) with the guide differences, the
    weights and both sums in registers, and adds their sums to the job's accumulators once: the
    accumulators' loads and stores, not the arithmetic alone, bound a pass per tap (5^3 on 128^3, same
    run: 3 taps per pass 1.1x a pass per tap, 5 taps 1.08x 3 taps).  A pass over whole window rows paired
    with the mirror tap (one exp per pair of opposite taps, sums of r + 1 planes in a ring) was tried: no
    faster at 5^3 and 0.75x at 7^3, for the same reason.  Otherwise a pass per tap: the squared guide
    distance summed over channels into a row, then the weight and the sums of every channel.  Each voxel
    sums its taps in the same order wherever its row is cut, so the chunked filter stays bit-identical.
    """
    _, c_count, depth, height, width = out.shape
    n_items = out.shape[0]
    g_count = gp.shape[1]
    hp, wp = gp.shape[3], gp.shape[4]
    plane = hp * wp
    xf = xp.reshape(n_items, c_count, gp.shape[2] * plane)
    gf = gp.reshape(n_items, g_count, gp.shape[2] * plane)
    # scalars, not the array: indexing coef in the loop kept the polynomial out of registers (34 vs 51)
    poly = (coef[0], coef[1], coef[2], coef[3], coef[4], coef[5])
    k = 2 * r + 1
    rows_per_job = max(1, PIECE // wp)
    jobs_per_plane = (height + rows_per_job - 1) // rows_per_job
    grouped = g_count == 1 and c_count == 1
    for job in numba.prange(n_items * depth * jobs_per_plane):
        prefer_512_bit_vectors()
        n = job // (depth * jobs_per_plane)
        z = (job // jobs_per_plane) % depth
        y0 = (job % jobs_per_plane) * rows_per_job
        y1 = min(height, y0 + rows_per_job)
        # from output voxel (z, y0, 0) to (z, y1 - 1, W - 1) in padded flat coordinates; for every tap the
        # shifted span stays inside the padded volume (the halo is r on every side)
        start = (z + r) * plane + (y0 + r) * wp + r
        length = (y1 - y0 - 1) * wp + width
        num = np.zeros((c_count, length), xp.dtype)
        den = np.zeros(length, xp.dtype)
        wrow = np.empty(length, xp.dtype)
        gc = gf[n, 0, start : start + length]
        for dz in range(k):
            for dy in range(k):
                row0 = start + (dz - r) * plane + (dy - r) * wp - r
                if grouped:
                    acc = num[0]
                    dx = 0
                    while dx < k:
                        q0 = row0 + dx
                        s0 = spatial[dz, dy, dx]
                        g0 = gf[n, 0, q0 : q0 + length]
                        x0 = xf[n, 0, q0 : q0 + length]
                        if k - dx >= 5:
                            s1 = spatial[dz, dy, dx + 1]
                            s2 = spatial[dz, dy, dx + 2]
                            s3 = spatial[dz, dy, dx + 3]
                            s4 = spatial[dz, dy, dx + 4]
                            g1 = gf[n, 0, q0 + 1 : q0 + 1 + length]
                            g2 = gf[n, 0, q0 + 2 : q0 + 2 + length]
                            g3 = gf[n, 0, q0 + 3 : q0 + 3 + length]
                            g4 = gf[n, 0, q0 + 4 : q0 + 4 + length]
                            x1 = xf[n, 0, q0 + 1 : q0 + 1 + length]
                            x2 = xf[n, 0, q0 + 2 : q0 + 2 + length]
                            x3 = xf[n, 0, q0 + 3 : q0 + 3 + length]
                            x4 = xf[n, 0, q0 + 4 : q0 + 4 + length]
                            for x in range(length):
                                c = gc[x]
                                t0 = c - g0[x]
                                t1 = c - g1[x]
                                t2 = c - g2[x]
                                t3 = c - g3[x]
                                t4 = c - g4[x]
                                v0 = weight(s0 - t0 * t0, floor, poly)
                                v1 = weight(s1 - t1 * t1, floor, poly)
                                v2 = weight(s2 - t2 * t2, floor, poly)
                                v3 = weight(s3 - t3 * t3, floor, poly)
                                v4 = weight(s4 - t4 * t4, floor, poly)
                                den[x] += ((v0 + v1) + (v2 + v3)) + v4
                                acc[x] += ((v0 * x0[x] + v1 * x1[x]) + (v2 * x2[x] + v3 * x3[x])) + v4 * x4[x]
                            dx += 5
                        elif k - dx >= 3:
                            s1 = spatial[dz, dy, dx + 1]
                            s2 = spatial[dz, dy, dx + 2]
                            g1 = gf[n, 0, q0 + 1 : q0 + 1 + length]
                            g2 = gf[n, 0, q0 + 2 : q0 + 2 + length]
                            x1 = xf[n, 0, q0 + 1 : q0 + 1 + length]
                            x2 = xf[n, 0, q0 + 2 : q0 + 2 + length]
                            for x in range(length):
                                c = gc[x]
                                t0 = c - g0[x]
                                t1 = c - g1[x]
                                t2 = c - g2[x]
                                v0 = weight(s0 - t0 * t0, floor, poly)
                                v1 = weight(s1 - t1 * t1, floor, poly)
                                v2 = weight(s2 - t2 * t2, floor, poly)
                                den[x] += (v0 + v1) + v2
                                acc[x] += (v0 * x0[x] + v1 * x1[x]) + v2 * x2[x]
                            dx += 3
                        elif k - dx == 2:
                            s1 = spatial[dz, dy, dx + 1]
                            g1 = gf[n, 0, q0 + 1 : q0 + 1 + length]
                            x1 = xf[n, 0, q0 + 1 : q0 + 1 + length]
                            for x in range(length):
                                c = gc[x]
                                t0 = c - g0[x]
                                t1 = c - g1[x]
                                v0 = weight(s0 - t0 * t0, floor, poly)
                                v1 = weight(s1 - t1 * t1, floor, poly)
                                den[x] += v0 + v1
                                acc[x] += v0 * x0[x] + v1 * x1[x]
                            dx += 2
                        else:
                            for x in range(length):
                                t0 = gc[x] - g0[x]
                                v0 = weight(s0 - t0 * t0, floor, poly)
                                den[x] += v0
                                acc[x] += v0 * x0[x]
                            dx += 1
                    continue
                for dx in range(k):
                    sp = spatial[dz, dy, dx]
                    q0 = row0 + dx
                    gq = gf[n, 0, q0 : q0 + length]
                    for x in range(length):
                        t = gc[x] - gq[x]
                        wrow[x] = sp - t * t
                    for g in range(1, g_count):
                        gcg = gf[n, g, start : start + length]
                        gq = gf[n, g, q0 : q0 + length]
                        for x in range(length):
                            t = gcg[x] - gq[x]
                            wrow[x] -= t * t
                    if c_count == 1:  # the IBF's case: weight and accumulate in one pass
                        xq = xf[n, 0, q0 : q0 + length]
                        acc = num[0]
                        for x in range(length):
                            v = weight(wrow[x], floor, poly)
                            den[x] += v
                            acc[x] += v * xq[x]
                    else:
                        for x in range(length):
                            v = weight(wrow[x], floor, poly)
                            den[x] += v
                            wrow[x] = v
                        for c in range(c_count):
                            xq = xf[n, c, q0 : q0 + length]
                            acc = num[c]
                            for x in range(length):
                                acc[x] += wrow[x] * xq[x]
        for c in range(c_count):
            acc = num[c]
            for y in range(y0, y1):
                dst = out[n, c, z, y]
                base = (y - y0) * wp
                for x in range(width):
                    dst[x] = acc[base + x] / den[base + x]


@numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False, cache=True)
def pad_replicate(src: Any, r: int, scale: Any, dst: Any, ranges: Any) -> None:
    """``dst`` = ``src * scale`` (N, C, D, H, W) padded by ``r`` replicated edge voxels on every side.

    The host-side ``F.pad(..., mode="replicate")`` of x and of the scaled guide took longer than the
    filter itself at 128^3 under load (torch's threads: 72 ms against a ~45 ms filter; numpy's pad 2 ms);
    this copy is one parallel pass.  ``scale`` has the array's dtype, so the product rounds as torch's did.
    ``ranges[job]`` gets the (min, max) of the scaled values of job ``(n, c, padded plane)``, from which the
    host bounds the guide distances of the call (whether the kernel needs its clamp).
    """
    n_items, c_count, depth, height, width = src.shape
    dp, hp = depth + 2 * r, height + 2 * r
    for job in numba.prange(n_items * c_count * dp):
        n = job // (c_count * dp)
        c = (job // dp) % c_count
        zp = job % dp
        z = min(max(zp - r, 0), depth - 1)
        lo = src[n, c, z, 0, 0] * scale
        hi = lo
        for yp in range(hp):
            y = min(max(yp - r, 0), height - 1)
            srow = src[n, c, z, y]
            drow = dst[n, c, zp, yp]
            left = srow[0] * scale
            right = srow[width - 1] * scale
            for i in range(r):
                drow[i] = left
                drow[r + width + i] = right
            for i in range(width):
                v = srow[i] * scale
                drow[r + i] = v
                lo = min(lo, v)
                hi = max(hi, v)
        ranges[job, 0] = lo
        ranges[job, 1] = hi

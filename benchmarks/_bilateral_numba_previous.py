"""The numba float32 bilateral kernel as it was before the grouped, 512-bit kernel (commit 6783b46).

Kept verbatim, for ``bench_bilateral.py`` only: the issue asks for old and new kernels measured in the same
run.  Not part of the library; the backend no longer calls it.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

#: fast-math without "arcp" and "afn": with them LLVM divided by a reciprocal estimate in the vectorised
#: body of a row but exactly in its scalar remainder, so a voxel's last bit depended on where its row was
#: cut and chunked whole-tomogram filtering no longer equalled the unchunked filter bit for bit.
FASTMATH = {"nnan", "ninf", "nsz", "contract"}


@intrinsic
def _as_float32(typingctx: Any, bits: Any) -> Any:
    """Reinterpret int32 bits as a float32 (a register move, so the loop stays vectorised)."""
    sig = types.float32(types.int32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


def weight(w: Any, floor: Any, c: Any) -> Any:
    """``2 ** max(w, floor)``; the compiled versions below are chosen by dtype at compile time."""
    return 2.0 ** max(w, floor)


@overload(weight, inline="always", jit_options={"fastmath": FASTMATH})
def _weight_impl(w: Any, floor: Any, c: Any) -> Any:
    if isinstance(w, types.Float) and w.bitwidth == 32:

        def polynomial(w: Any, floor: Any, c: Any) -> Any:
            w = max(w, floor)
            whole = np.floor(w)
            f = w - whole
            poly = c[0] + f * (c[1] + f * (c[2] + f * (c[3] + f * (c[4] + f * (c[5] + f * c[6])))))
            return poly * _as_float32((np.int32(whole) + np.int32(127)) << 23)

        return polynomial

    def exact(w: Any, floor: Any, c: Any) -> Any:
        return math.exp2(max(w, floor))

    return exact


#: Output voxels per parallel job (4 KiB of float32 per accumulator, so a job's numerator, normaliser and
#: weight buffers stay in L1).  Measured on 2 threads: 1024 and 2048 tie; 4096 and longer lose 15 % at
#: 128^3 (the buffers leave L1).
PIECE = 1024


@numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False, cache=True)
def bilateral_pieces(xp: Any, gp: Any, out: Any, r: int, spatial: Any, floor_arr: Any, coef: Any) -> None:
    """Joint bilateral filter of replicate-padded ``xp`` (N, C, D+2r, H+2r, W+2r) into ``out``.

    ``gp`` is the padded guide already scaled so that the log2 weight of a tap is ``spatial[tap] -
    |gp_p - gp_q|^2``; ``floor_arr[0]`` is the lowest log2 weight; ``coef`` the 2**f polynomial.

    A job is a run of whole output rows of one plane, taken as one contiguous span of the flattened padded
    volume (the rows' halo columns ride along and are dropped at the end), so every tap is one long loop
    over a contiguous span: the loop vectorises with no per-row remainder, and the per-tap setup is paid
    once per ~1000 voxels instead of once per row (16 x 32^3 at 5^3: 41 -> 49 Mvox/s; the IBF batch 111
    -> 140).  The halo columns cost (W + 2r) / W extra work.  Each voxel still sums its taps in window
    order, so results do not depend on the volume's layout (the chunked filter is bit-identical).
    """
    n_items, c_count, depth, height, width = out.shape
    g_count = gp.shape[1]
    hp, wp = gp.shape[3], gp.shape[4]
    plane = hp * wp
    xf = xp.reshape(n_items, c_count, gp.shape[2] * plane)
    gf = gp.reshape(n_items, g_count, gp.shape[2] * plane)
    floor = floor_arr[0]
    # scalars, not the array: indexing coef in the loop kept the polynomial out of registers (34 vs 51)
    poly = (coef[0], coef[1], coef[2], coef[3], coef[4], coef[5], coef[6])
    k = 2 * r + 1
    rows_per_job = max(1, PIECE // wp)
    jobs_per_plane = (height + rows_per_job - 1) // rows_per_job
    for job in numba.prange(n_items * depth * jobs_per_plane):
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
        for dz in range(k):
            for dy in range(k):
                for dx in range(k):
                    sp = spatial[dz, dy, dx]
                    q0 = start + (dz - r) * plane + (dy - r) * wp + (dx - r)
                    gc = gf[n, 0, start : start + length]
                    gq = gf[n, 0, q0 : q0 + length]
                    for x in range(length):
                        t = gc[x] - gq[x]
                        wrow[x] = sp - t * t
                    for g in range(1, g_count):
                        gc = gf[n, g, start : start + length]
                        gq = gf[n, g, q0 : q0 + length]
                        for x in range(length):
                            t = gc[x] - gq[x]
                            wrow[x] -= t * t
                    if c_count == 1:  # the common case: weight and accumulate in one pass
                        xq = xf[n, 0, q0 : q0 + length]
                        row = num[0]
                        for x in range(length):
                            v = weight(wrow[x], floor, poly)
                            den[x] += v
                            row[x] += v * xq[x]
                    else:
                        for x in range(length):
                            v = weight(wrow[x], floor, poly)
                            den[x] += v
                            wrow[x] = v
                        for c in range(c_count):
                            xq = xf[n, c, q0 : q0 + length]
                            row = num[c]
                            for x in range(length):
                                row[x] += wrow[x] * xq[x]
        for c in range(c_count):
            row = num[c]
            for y in range(y0, y1):
                dst = out[n, c, z, y]
                base = (y - y0) * wp
                for x in range(width):
                    dst[x] = row[base + x] / den[base + x]


def previous_coefficients() -> np.ndarray:
    """The old 2**f fit: degree 6, least squares on [0, 1) at Chebyshev nodes."""
    nodes = 0.5 + 0.5 * np.cos(np.pi * (np.arange(256) + 0.5) / 256)
    return np.polynomial.polynomial.polyfit(nodes, np.exp2(nodes), 6)


def previous_numba_bilateral(x: Any, guide: Any, params: Any) -> Any:
    """The old backend's host code (pad, scale the guide, clamp, thread count) around the old kernel."""
    import torch
    import torch.nn.functional as F

    from voxuda.ops.backends.base import LOG2E
    from voxuda.ops.backends.numba_backend import spatial_log2_table

    r = params.radius
    with torch.no_grad():
        pad = (r,) * 6
        scale = math.sqrt(LOG2E / (2.0 * params.sigma_range**2))
        xp = F.pad(x, pad, mode="replicate").contiguous().numpy()
        gp = F.pad(guide * scale, pad, mode="replicate").contiguous().numpy()
    dtype = xp.dtype
    out = np.empty(tuple(x.shape), dtype=dtype)
    floor = np.array([-115.0 if dtype == np.float32 else -1000.0], dtype=dtype)
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    try:
        bilateral_pieces(xp, gp, out, r, spatial_log2_table(params, dtype), floor,
                         previous_coefficients().astype(dtype))
    finally:
        numba.set_num_threads(previous)
    return torch.from_numpy(out)

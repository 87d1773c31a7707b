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


@numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False, cache=True)
def bilateral_rows(xp: Any, gp: Any, out: Any, r: int, spatial: Any, floor_arr: Any, coef: Any) -> None:
    """Joint bilateral filter of replicate-padded ``xp`` (N, C, D+2r, H+2r, W+2r) into ``out``.

    ``gp`` is the padded guide already scaled so that the log2 weight of a tap is ``spatial[tap] -
    |gp_p - gp_q|^2``; ``floor_arr[0]`` is the lowest log2 weight; ``coef`` the 2**f polynomial.
    """
    n_items, c_count, depth, height, width = out.shape
    g_count = gp.shape[1]
    floor = floor_arr[0]
    # scalars, not the array: indexing coef in the loop kept the polynomial out of registers (34 vs 51)
    poly = (coef[0], coef[1], coef[2], coef[3], coef[4], coef[5], coef[6])
    k = 2 * r + 1
    for job in numba.prange(n_items * depth * height):
        n = job // (depth * height)
        z = (job // height) % depth
        y = job % height
        num = np.zeros((c_count, width), xp.dtype)
        den = np.zeros(width, xp.dtype)
        wrow = np.empty(width, xp.dtype)
        for dz in range(k):
            for dy in range(k):
                for dx in range(k):
                    sp = spatial[dz, dy, dx]
                    gc = gp[n, 0, z + r, y + r, r : r + width]
                    gq = gp[n, 0, z + dz, y + dy, dx : dx + width]
                    for x in range(width):
                        t = gc[x] - gq[x]
                        wrow[x] = sp - t * t
                    for g in range(1, g_count):
                        gc = gp[n, g, z + r, y + r, r : r + width]
                        gq = gp[n, g, z + dz, y + dy, dx : dx + width]
                        for x in range(width):
                            t = gc[x] - gq[x]
                            wrow[x] -= t * t
                    if c_count == 1:  # the common case: weight and accumulate in one pass
                        xq = xp[n, 0, z + dz, y + dy, dx : dx + width]
                        row = num[0]
                        for x in range(width):
                            v = weight(wrow[x], floor, poly)
                            den[x] += v
                            row[x] += v * xq[x]
                    else:
                        for x in range(width):
                            v = weight(wrow[x], floor, poly)
                            den[x] += v
                            wrow[x] = v
                        for c in range(c_count):
                            xq = xp[n, c, z + dz, y + dy, dx : dx + width]
                            row = num[c]
                            for x in range(width):
                                row[x] += wrow[x] * xq[x]
        for c in range(c_count):
            dst = out[n, c, z, y]
            row = num[c]
            for x in range(width):
                dst[x] = row[x] / den[x]

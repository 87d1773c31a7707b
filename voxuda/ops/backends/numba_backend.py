"""CPU fast path: the joint bilateral filter as one numba-compiled, multi-threaded loop nest.

Why a compiled path at all: eager torch needs about seven whole-array passes per pair of window taps, so it
is bound by memory traffic (``torch_backend``); a fused loop keeps each output row's accumulators in L1 and
does the ~15 FLOPs per tap in registers.  numba (an optional extra, ``pip install voxuda[numba]``) is used
rather than a hand-built C++ extension because it needs no compiler on the user's machine and compiles for the
CPU it runs on.

How it is organised (each choice measured on 2 threads, ``benchmarks/bench_bilateral.py``):

- one parallel job per output row (n, z, y); the row's numerator and normaliser live in small buffers and
  every inner loop runs over x on contiguous row slices, which LLVM vectorises (indexing a flat array with
  computed offsets instead defeated vectorisation: numba's negative-index wraparound got in the way);
- weights are ``2**w`` with log2(e) folded into the guide scale and the spatial table on the host;
- float32 evaluates ``2**w`` as 2**floor(w) (built from the exponent bits) times a degree-6 polynomial in
  the fraction, fitted at import time; unlike ``math.exp`` it vectorises (the libm call kept the loop
  scalar: 6.5 vs 51 Mvox/s at 5^3).  Its relative error is below 3e-7, i.e. a few float32 ulps per weight
  (``tests/ops/test_numba_backend.py`` checks it against float64).  float64 uses the exact ``math.exp2``;
- log-weights are clamped at -115 (float32, 2**-115 ~ 2e-35) / -1000 (float64), which keeps 2**floor(w)
  a normal number; a weight that small next to the centre tap's 1 changes no result.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from voxuda.ops.backends.base import LOG2E, FilterParams

#: Degree of the polynomial for 2**f on [0, 1); 6 fits to 2.6e-9 relative, far below float32's 6e-8 ulp.
POLY_DEGREE = 6
#: fast-math without "arcp" and "afn": with them LLVM divided by a reciprocal estimate in the vectorised
#: body of a row but exactly in its scalar remainder, so a voxel's last bit depended on where its row was
#: cut and chunked whole-tomogram filtering no longer equalled the unchunked filter bit for bit.
_FASTMATH = {"nnan", "ninf", "nsz", "contract"}
_LOG2_FLOOR = {np.dtype(np.float32): -115.0, np.dtype(np.float64): -1000.0}


def probe() -> tuple[bool, str]:
    """Available when numba imports (the optional ``numba`` extra)."""
    try:
        import numba
    except ImportError as exc:
        return False, f"numba is not installed ({exc}); pip install 'voxuda[numba]'"
    return True, f"numba {numba.__version__} (CPU tensors, float32/float64)"


def exp2_coefficients(degree: int = POLY_DEGREE) -> np.ndarray:
    """Least-squares fit of 2**f on [0, 1) at Chebyshev nodes, lowest order first (float64)."""
    nodes = 0.5 + 0.5 * np.cos(np.pi * (np.arange(256) + 0.5) / 256)
    return np.polynomial.polynomial.polyfit(nodes, np.exp2(nodes), degree)


@functools.cache
def _kernel(exact: bool) -> Any:
    """The row kernel with ``exact`` (math.exp2) or polynomial weights baked in as a constant.

    Compiled on first use (about 2.5 s per dtype and process), so ``import voxuda.ops`` stays fast; a
    constant rather than an argument because a run-time flag left the weight branch in the loop and cost
    a fifth of the speed.
    """
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def as_float32(typingctx: Any, bits: Any) -> Any:
        """Reinterpret int32 bits as a float32 (a register move, so the loop stays vectorised)."""
        sig = types.float32(types.int32)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.FloatType())

        return sig, codegen

    @numba.njit(inline="always", fastmath=_FASTMATH)
    def weight(w: Any, floor: Any, c: Any) -> Any:
        w = max(w, floor)
        if exact:
            return math.exp2(w)
        whole = np.floor(w)
        f = w - whole
        poly = c[0] + f * (c[1] + f * (c[2] + f * (c[3] + f * (c[4] + f * (c[5] + f * c[6])))))
        return poly * as_float32((np.int32(whole) + np.int32(127)) << 23)

    # not cache=True: numba saved this closure's machine code but never found it again (a miss per process)
    @numba.njit(parallel=True, fastmath=_FASTMATH, boundscheck=False)
    def bilateral_rows(xp: Any, gp: Any, out: Any, r: int, spatial: Any, floor_arr: Any, coef: Any) -> None:
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

    return bilateral_rows


def spatial_log2_table(params: FilterParams, dtype: np.dtype) -> np.ndarray:
    """(k, k, k) table of -log2 spatial weights, indexed by offset + radius."""
    cz, cy, cx, _ = params.exp2_coefficients()
    k = np.arange(-params.radius, params.radius + 1, dtype=np.float64)
    table = -(cz * k[:, None, None] ** 2 + cy * k[None, :, None] ** 2 + cx * k[None, None, :] ** 2)
    return np.ascontiguousarray(table, dtype=dtype)


class NumbaBackend:
    """Compiled CPU backend; between torch (reference, 10) and CUDA (100) in ``auto``'s order."""

    name = "numba"
    priority = 50

    def is_available(self) -> tuple[bool, str]:
        return probe()

    def supports(self, x: torch.Tensor, guide: torch.Tensor, params: FilterParams) -> tuple[bool, str]:
        if x.device.type != "cpu" or guide.device.type != "cpu":
            return False, "CPU tensors only"
        if x.dtype not in (torch.float32, torch.float64) or guide.dtype != x.dtype:
            return False, "float32/float64 with a guide of the same dtype"
        return True, "CPU float32/float64"

    def bilateral3d(self, x: torch.Tensor, guide: torch.Tensor, params: FilterParams) -> torch.Tensor:
        import numba

        r = params.radius
        if r == 0:
            return x.clone()
        dtype = np.dtype(torch.empty(0, dtype=x.dtype).numpy().dtype)
        with torch.no_grad():
            pad = (r, r, r, r, r, r)
            scale = math.sqrt(LOG2E / (2.0 * params.sigma_range**2))
            xp = F.pad(x, pad, mode="replicate").contiguous().numpy()
            gp = F.pad(guide * scale, pad, mode="replicate").contiguous().numpy()
        out = np.empty(tuple(x.shape), dtype=dtype)
        floor = np.array([_LOG2_FLOOR[dtype]], dtype=dtype)
        coef = exp2_coefficients().astype(dtype)
        kernel = _kernel(dtype == np.float64)
        previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        try:
            kernel(xp, gp, out, r, spatial_log2_table(params, dtype), floor, coef)
        finally:
            numba.set_num_threads(previous)
        return torch.from_numpy(out)

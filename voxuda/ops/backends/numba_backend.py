"""CPU fast path: the joint bilateral filter as one numba-compiled, multi-threaded loop nest.

Why a compiled path at all: eager torch needs about seven whole-array passes per pair of window taps, so it
is bound by memory traffic (``torch_backend``); a fused loop keeps each output row's accumulators in L1 and
does the ~15 FLOPs per tap in registers.  numba (an optional extra, ``pip install voxuda[numba]``) is used
rather than a hand-built C++ extension because it needs no compiler on the user's machine and compiles for the
CPU it runs on.

The compiled code lives in :mod:`voxuda.ops.backends._numba_kernels` (imported on first use, so
``import voxuda.ops`` never imports numba; numba caches its machine code on disk).  How it is organised
(each choice measured on 2 threads, ``benchmarks/bench_bilateral.py``):

- one parallel job per run of ~1000 output voxels (whole rows of one plane), handled as one contiguous
  span of the flattened padded volume, so each tap's loop is one long loop over contiguous slices, which
  LLVM vectorises; the job's numerator and normaliser stay in L1 (indexing a flat array with computed
  offsets instead of slicing defeated vectorisation: numba's negative-index wraparound got in the way);
- weights are ``2**w`` with log2(e) folded into the guide scale and the spatial table on the host;
- float32 evaluates ``2**w`` as 2**floor(w) (built from the exponent bits) times a degree-6 polynomial in
  the fraction, fitted at import time; unlike ``math.exp`` it vectorises (the libm call kept the loop
  scalar: 6.5 vs 51 Mvox/s at 5^3).  Its relative error is below 3e-7, i.e. a few float32 ulps per weight
  (``tests/ops/test_numba_backend.py`` checks it against float64).  float64 uses the exact ``math.exp2``;
- log-weights are clamped at -115 (float32, 2**-115 ~ 2e-35) / -1000 (float64), which keeps 2**floor(w)
  a normal number; a weight that small next to the centre tap's 1 changes no result.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from voxuda.ops.backends.base import LOG2E, FilterParams

#: Degree of the polynomial for 2**f on [0, 1); 6 fits to 2.6e-9 relative, far below float32's 6e-8 ulp.
POLY_DEGREE = 6
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


#: The float32 polynomial, fitted once at import (``bilateral3d`` casts it to the call's dtype).
_COEFFICIENTS = exp2_coefficients()


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
        with torch.no_grad():
            pad = (r, r, r, r, r, r)
            scale = math.sqrt(LOG2E / (2.0 * params.sigma_range**2))
            xp = F.pad(x, pad, mode="replicate").contiguous().numpy()
            gp = F.pad(guide * scale, pad, mode="replicate").contiguous().numpy()
        dtype = xp.dtype
        out = np.empty(tuple(x.shape), dtype=dtype)
        floor = np.array([_LOG2_FLOOR[dtype]], dtype=dtype)
        coef = _COEFFICIENTS.astype(dtype)
        from voxuda.ops.backends._numba_kernels import bilateral_pieces  # imports numba: only here
        previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        try:
            bilateral_pieces(xp, gp, out, r, spatial_log2_table(params, dtype), floor, coef)
        finally:
            numba.set_num_threads(previous)
        return torch.from_numpy(out)

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
- float32 evaluates ``2**w`` as 2**n times a degree-5 polynomial in f = w - n, n = round(w) found by the
  add-and-subtract of 1.5 * 2**23 (which also leaves n, biased, in the low mantissa bits, so one shift
  builds 2**n), about 11 vector operations; unlike ``math.exp`` it vectorises (the libm call kept the loop
  scalar: 6.5 vs 51 Mvox/s at 5^3).  Its relative error per weight is below ``FLOAT32_WEIGHT_RTOL``
  (2.5e-7, about 2 float32 ulps; ``tests/ops/test_numba_fast_exp.py`` checks the compiled function against
  float64 over the whole clamped range).  float64 uses the exact ``math.exp2``;
- one guide and one image channel (the classic filter): five (then 3, 2, 1) neighbouring taps of a window
  row per pass, with their sums in registers; the parallel worker is compiled for 512-bit vectors where the
  CPU has them (LLVM's default tuning for Intel server CPUs stays at 256 bits);
- the replicate padding and the guide's scaling are a parallel numba pass (torch's ``F.pad`` took longer
  than the filter at 128^3 on a loaded machine);
- log-weights are clamped at -115 (float32, 2**-115 ~ 2e-35) / -1000 (float64), which keeps 2**n
  a normal number; a weight that small next to the centre tap's 1 changes no result.  When the guide's
  range (taken in the padding pass) shows that no log2 weight can reach the floor, the kernel is called
  with ``floor=None`` and compiled without the clamp (``log2_floor_if_needed``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from voxuda.ops.backends.base import LOG2E, FilterParams

#: Degree of the polynomial for 2**f on [-0.5, 0.5]: 5 fits to 7.7e-8 relative, and float32 evaluation
#: brings the compiled weight to < 2.5e-7 (4 would fit to only 2.7e-6; 6 costs one more FMA per tap).
POLY_DEGREE = 5
#: Bound on the relative error of one float32 weight against the exact 2**w (documented in docs/ops.md).
FLOAT32_WEIGHT_RTOL = 2.5e-7
_LOG2_FLOOR = {np.dtype(np.float32): -115.0, np.dtype(np.float64): -1000.0}


def probe() -> tuple[bool, str]:
    """Available when numba imports (the optional ``numba`` extra)."""
    try:
        import numba
    except ImportError as exc:
        return False, f"numba is not installed ({exc}); pip install 'voxuda[numba]'"
    return True, f"numba {numba.__version__} (CPU tensors, float32/float64)"


def exp2_coefficients(degree: int = POLY_DEGREE) -> np.ndarray:
    """Relative least-squares fit of 2**f on [-0.5, 0.5] at Chebyshev nodes, lowest order first (float64).

    The interval is where round-to-nearest leaves the fraction; fitting the relative error (weights
    2**-f) matches what the filter needs, since a weight's error scales with the weight.
    """
    nodes = 0.5 * np.cos(np.pi * (np.arange(512) + 0.5) / 512)
    return np.polynomial.polynomial.polyfit(nodes, np.exp2(nodes), degree, w=np.exp2(-nodes))


#: The float32 polynomial, fitted once at import (``bilateral3d`` casts it to the call's dtype).
_COEFFICIENTS = exp2_coefficients()


def fast_exp2(w: np.ndarray) -> np.ndarray:
    """The kernel's compiled weight ``2**max(w, floor)`` applied to a 1-D float32/float64 array.

    The same inlined function the filter runs, so tests and the benchmark's exp-throughput probe measure
    the real thing (float32: the polynomial; float64: exact ``exp2``).
    """
    from voxuda.ops.backends._numba_kernels import exp2_rows  # imports numba: only here

    w = np.ascontiguousarray(w)
    out = np.empty_like(w)
    exp2_rows(w, out, _LOG2_FLOOR[w.dtype], _COEFFICIENTS.astype(w.dtype))
    return out


def log2_floor_if_needed(ranges: np.ndarray, spatial: np.ndarray) -> np.floating | None:
    """The clamp for the kernel's log2 weights, or None when no weight of the call can fall below it.

    ``ranges`` is (N, G, planes, 2): min and max of the scaled guide per item, channel and plane, so
    ``sum_g (max_g - min_g)^2`` bounds every squared guide distance of an item; with the lowest spatial
    log2 weight it bounds every log2 weight from below.  A margin of 1 (a factor 2) covers the float
    rounding of the differences.  Without the clamp the results are the same bit for bit (``max(w, floor)``
    is ``w`` when ``w >= floor``), one operation per tap cheaper.
    """
    floor = _LOG2_FLOOR[spatial.dtype]
    spread = (ranges[..., 1].max(axis=2).astype(np.float64) - ranges[..., 0].min(axis=2)) ** 2
    lowest = float(spatial.min()) - float(spread.sum(axis=1).max())
    return None if lowest >= floor + 1.0 else spatial.dtype.type(floor)


def spatial_log2_table(params: FilterParams, dtype: np.dtype) -> np.ndarray:
    """(k, k, k) table of -log2 spatial weights, indexed by offset + radius."""
    cz, cy, cx, _ = params.exp2_coefficients()
    k = np.arange(-params.radius, params.radius + 1, dtype=np.float64)
    table = -(cz * k[:, None, None] ** 2 + cy * k[None, :, None] ** 2 + cx * k[None, None, :] ** 2)
    return np.ascontiguousarray(table, dtype=dtype)


class NumbaBackend:
    """Compiled CPU backend; registered between torch (10) and cupy (100) in ``auto``'s order (builtin.py)."""

    name = "numba"

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
        from voxuda.ops.backends._numba_kernels import bilateral_pieces, pad_replicate  # imports numba

        scale = math.sqrt(LOG2E / (2.0 * params.sigma_range**2))
        xs, gs = x.detach().contiguous().numpy(), guide.detach().contiguous().numpy()
        dtype = xs.dtype
        xp = np.empty((*xs.shape[:2], *(s + 2 * r for s in xs.shape[2:])), dtype=dtype)
        gp = np.empty((*gs.shape[:2], *(s + 2 * r for s in gs.shape[2:])), dtype=dtype)
        x_ranges = np.empty((xs.shape[0] * xs.shape[1] * xp.shape[2], 2), dtype=dtype)
        g_ranges = np.empty((gs.shape[0] * gs.shape[1] * gp.shape[2], 2), dtype=dtype)
        out = np.empty(tuple(x.shape), dtype=dtype)
        spatial = spatial_log2_table(params, dtype)
        coef = _COEFFICIENTS.astype(dtype)
        previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        try:
            pad_replicate(xs, r, dtype.type(1.0), xp, x_ranges)
            pad_replicate(gs, r, dtype.type(scale), gp, g_ranges)
            floor = log2_floor_if_needed(g_ranges.reshape(gs.shape[0], gs.shape[1], -1, 2), spatial)
            bilateral_pieces(xp, gp, out, r, spatial, floor, coef)
        finally:
            numba.set_num_threads(previous)
        return torch.from_numpy(out)

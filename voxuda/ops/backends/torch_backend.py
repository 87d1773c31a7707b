"""Reference backend: shift-and-accumulate over window offsets in eager torch (any device, O(N) memory).

The window is never unfolded (that costs O(N k^3) memory); instead the loop runs over the (2r+1)^3 offsets
and every step is a handful of elementwise ops over the flat arrays (block by block on the CPU).

Four savings over the textbook loop, each measured on 2 CPU threads (``benchmarks/bench_bilateral.py``):

- flat shifts: the replicate-padded volume is handled as one contiguous 1D array per channel, where the
  3D offset (dz, dy, dx) is the flat shift dz*Hp*Wp + dy*Wp + dx.  Every op is then a single contiguous
  pass instead of a strided 5D view with 32- or 128-voxel inner rows; this alone took 128^3 at 5^3 from
  3.4 to 12 Mvox/s.  Flat shifts also pair voxels across row, slice and batch edges, but only in the halo:
  for an output voxel the padding (r on every side) keeps p + o inside its own padded box, and the halo
  is cropped at the end.
- symmetry: the range weight of offset +o at p equals that of -o at p+o (|g_p - g_q| is symmetric and the
  spatial Gaussian is even), so one exp serves both taps;
- folded constants: the guide is pre-scaled by sqrt(1 / (2 sigma_r^2)) and the spatial exponent is the
  constant the first ``addcmul`` starts from, so sub + addcmul + exp gives a weight;
- cache blocking (CPU): all offsets of one block of output positions before the next block, so the ~10
  arrays a block touches stay in L2 instead of seven whole arrays streaming from memory per offset pair
  (128^3 at 5^3: 12.4 -> 17 Mvox/s in the accumulation).  A block writes only its own positions, taking
  the "other side" weights of pairs that start in the previous positions from an extended span, so the
  result is bit-identical to the unblocked loop (tested); :mod:`voxuda.ops.chunked` relies on that.

On a GPU the whole array is one block: eager ops there are launch-bound, not cache-bound.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from voxuda.ops.backends.base import FilterParams


def probe() -> tuple[bool, str]:
    """Availability probe for the registry: torch is a hard dependency, so always available."""
    return True, "torch is always available"


def _half_offsets(radius: int) -> list[tuple[int, int, int]]:
    """Offsets o != 0 with o > 0 in lexicographic order: one of each (+o, -o) pair."""
    rng = range(-radius, radius + 1)
    return [o for o in itertools.product(rng, rng, rng) if o > (0, 0, 0)]


def _flat_channels(padded: torch.Tensor) -> torch.Tensor:
    """(N, C, Dp, Hp, Wp) -> (C, N*Dp*Hp*Wp): one contiguous row per channel, batch items end to end."""
    n, c = padded.shape[:2]
    return padded.reshape(n, c, -1).transpose(0, 1).reshape(c, -1)


#: Weights below exp(-80) ~ 1.8e-35 are clamped up to it: exp of a more negative float32 is subnormal, and
#: subnormal exps and products run ~8x slower on x86 (the IBF's Laplacian-gradient guide at sigma_r 1.2
#: sent most weights there: 119 ms per 16 x 32^3 batch, about 20 ms after the clamp). A weight of 1.8e-35
#: next to the centre tap's 1 changes no float32 result.
_LOWEST_LOG_WEIGHT = {torch.float32: -80.0, torch.float64: -700.0}


def _needs_clamp(gf: torch.Tensor, shifts: list[tuple[int, float]]) -> bool:
    """Whether any exponent can fall below the subnormal guard (cheap bound from the guide's range)."""
    span = float(sum((row.max() - row.min()) ** 2 for row in gf))
    lowest = min((log_spatial for _, log_spatial in shifts), default=0.0)
    return lowest - span < _LOWEST_LOG_WEIGHT.get(gf.dtype, -80.0)


#: Elements of one block of the flat arrays (512 KiB of float32): the ~10 arrays a block touches then stay
#: in the 2 MiB L2 caches of two cores.  Accumulation alone, 128^3 at 5^3 on 2 threads, blocks of 2^15 /
#: 2^17 / 2^19 float32 elements: 12.6 (per-op overhead wins) / 17.0 / 14.6 Mvox/s; unblocked 12.4.
BLOCK_BYTES = 1 << 19


class _Weights:
    """Range-times-spatial weights ``e[j] = w(j, j + shift)`` for a span of flat positions.

    Each weight is computed from the same operands in the same order wherever it is needed, so every
    output voxel's sum is bit-identical however the flat arrays are blocked (the chunked filter relies on
    that).
    """

    def __init__(self, gf: torch.Tensor, shifts: list[tuple[int, float]], capacity: int) -> None:
        self.first, *self.others = gf.unbind(0)
        self.floor = _LOWEST_LOG_WEIGHT.get(gf.dtype, -80.0) if _needs_clamp(gf, shifts) else None
        dtype, device = gf.dtype, gf.device
        self.stores = (torch.empty(capacity, dtype=dtype, device=device),
                       torch.empty(capacity, dtype=dtype, device=device))
        self.scratch = torch.empty(capacity, dtype=dtype, device=device)

    def span(self, lo: int, hi: int, shift: int, log_spatial: torch.Tensor, store: int = 0) -> torch.Tensor:
        """Weights for j in [lo, hi); ``log_spatial`` is the offset's spatial exponent (a 0-d tensor)."""
        e, t = self.stores[store][: hi - lo], self.scratch[: hi - lo]
        first = self.first
        torch.sub(first[lo:hi], first[lo + shift : hi + shift], out=t)
        torch.addcmul(log_spatial, t, t, value=-1.0, out=e)
        for row in self.others:
            torch.sub(row[lo:hi], row[lo + shift : hi + shift], out=t)
            e.addcmul_(t, t, value=-1.0)
        if self.floor is not None:
            e.clamp_min_(self.floor)
        return e.exp_()


def _accumulate(xf: torch.Tensor, gf: torch.Tensor, shifts: list[tuple[int, float]], block: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Numerator (C, L) and normaliser (L,) of the filter at every flat position (valid in the interior).

    Output positions are visited in blocks of ``block`` elements, all offsets per block, so the arrays a
    block touches stay in cache (the whole-array loop streamed ~7 arrays from memory per offset pair).  A
    block [b0, b1) adds, for each shift s, the pair weights w(j, j + s) of its own positions ("p side") and
    w(k - s, k) of the positions s behind ("q side"), and writes nothing outside [b0, b1).  When s < block
    both spans overlap, and one span [b0 - s, b1) of weights serves both sides, so each exp is still shared
    by the two taps of a pair except at the block edges.
    """
    length = xf.shape[1]
    num = xf.clone()  # the centre tap, weight 1
    den = torch.ones(length, dtype=xf.dtype, device=xf.device)
    # one channel (the common case): 1D views, so each slice below is one cheap view, not two
    num_rows, x_rows = (num[0], xf[0]) if xf.shape[0] == 1 else (num, xf)
    largest = max((shift for shift, _ in shifts), default=0)
    weights = _Weights(gf, shifts, min(length, block + largest))
    plan = [(shift, torch.tensor(log_spatial, dtype=xf.dtype, device=xf.device))
            for shift, log_spatial in shifts]
    ep: torch.Tensor | None  # the two sides' weights; None where a side is empty near the array's ends
    eq: torch.Tensor | None
    for b0 in range(0, length, block):
        b1 = min(b0 + block, length)
        den_block, num_block = den[b0:b1], num_rows[..., b0:b1]
        for shift, start in plan:
            if shift <= b0 and b1 + shift <= length and shift < block:
                # the common case, both sides whole: one span [b0 - s, b1) of weights serves both
                e = weights.span(b0 - shift, b1, shift, start)
                ep, eq = e[shift:], e[: b1 - b0]
                den_block.add_(ep)
                num_block.addcmul_(ep, x_rows[..., b0 + shift : b1 + shift])
                den_block.add_(eq)
                num_block.addcmul_(eq, x_rows[..., b0 - shift : b1 - shift])
                continue
            # near the ends of the array, or a shift longer than the block
            p_end = min(b1, length - shift)  # p side: j in [b0, p_end) pairs with j + s
            q_start = max(b0, shift)  # q side: k in [q_start, b1) pairs with k - s
            if shift < block:
                lo, hi = max(0, b0 - shift), min(b1, length - shift)
                if hi <= lo:
                    continue
                e = weights.span(lo, hi, shift, start)
                ep = e[b0 - lo : p_end - lo] if p_end > b0 else None
                eq = e[q_start - shift - lo : b1 - shift - lo] if b1 > q_start else None
            else:
                ep = weights.span(b0, p_end, shift, start) if p_end > b0 else None
                eq = (weights.span(q_start - shift, b1 - shift, shift, start, store=1)
                      if b1 > q_start else None)
            if ep is not None:
                den[b0:p_end].add_(ep)
                num_rows[..., b0:p_end].addcmul_(ep, x_rows[..., b0 + shift : p_end + shift])
            if eq is not None:
                den[q_start:b1].add_(eq)
                num_rows[..., q_start:b1].addcmul_(eq, x_rows[..., q_start - shift : b1 - shift])
    return num, den


class TorchBackend:
    """Eager-torch joint bilateral filter; the reference every other backend is tested against."""

    name = "torch"

    def is_available(self) -> tuple[bool, str]:
        return probe()

    def supports(self, x: torch.Tensor, guide: torch.Tensor, params: FilterParams) -> tuple[bool, str]:
        return True, "any device, float32/float64, any channel count"

    def bilateral3d(self, x: torch.Tensor, guide: torch.Tensor, params: FilterParams) -> torch.Tensor:
        r = params.radius
        if r == 0:
            return x.clone()
        n, c, d, h, w = x.shape
        hp, wp = h + 2 * r, w + 2 * r
        with torch.no_grad():
            scale = math.sqrt(1.0 / (2.0 * params.sigma_range**2))
            pad = (r, r, r, r, r, r)
            xf = _flat_channels(F.pad(x, pad, mode="replicate"))
            gf = _flat_channels(F.pad(guide * scale, pad, mode="replicate"))
            offsets = _half_offsets(r)
            shifts = [((o[0] * hp + o[1]) * wp + o[2], -params.spatial_exponent(*o)) for o in offsets]
            block = BLOCK_BYTES // xf.element_size() if xf.device.type == "cpu" else xf.shape[1]
            num, den = _accumulate(xf, gf, shifts, max(1, block))
            num.div_(den)
            out = num.reshape(c, n, d + 2 * r, hp, wp).transpose(0, 1)
            return out[:, :, r : r + d, r : r + h, r : r + w].contiguous()

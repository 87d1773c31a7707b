"""Reference backend: shift-and-accumulate over window offsets in eager torch (any device, O(N) memory).

The window is never unfolded (that costs O(N k^3) memory); instead the loop runs over the (2r+1)^3 offsets
and every step is a handful of whole-array elementwise ops.

Three savings over the textbook loop, each measured on 2 CPU threads (``benchmarks/bench_bilateral.py``):

- flat shifts: the replicate-padded volume is handled as one contiguous 1D array per channel, where the
  3D offset (dz, dy, dx) is the flat shift dz*Hp*Wp + dy*Wp + dx.  Every op is then a single contiguous
  pass instead of a strided 5D view with 32- or 128-voxel inner rows; this alone took 128^3 at 5^3 from
  3.4 to 12 Mvox/s.  Flat shifts also pair voxels across row, slice and batch edges, but only in the halo:
  for an output voxel the padding (r on every side) keeps p + o inside its own padded box, and the halo
  is cropped at the end.
- symmetry: the range weight of offset +o at p equals that of -o at p+o (|g_p - g_q| is symmetric and the
  spatial Gaussian is even), so one exp serves both taps;
- folded constants: the guide is pre-scaled by sqrt(1 / (2 sigma_r^2)) and the spatial exponent is the
  constant the first ``addcmul`` starts from, so sub + addcmul + exp gives a weight.

Slabbing the flat arrays into cache-sized blocks was tried and lost (per-op overhead outweighed the cache
gain on 2 threads), so the passes run over the whole array; :mod:`voxuda.ops.chunked` bounds memory for
whole tomograms.
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


def _accumulate(xf: torch.Tensor, gf: torch.Tensor, shifts: list[tuple[int, float]]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Numerator (C, L) and normaliser (L,) of the filter at every flat position (valid in the interior)."""
    length = xf.shape[1]
    floor = _LOWEST_LOG_WEIGHT.get(xf.dtype, -80.0) if _needs_clamp(gf, shifts) else None
    num = xf.clone()  # the centre tap, weight 1
    den = torch.ones(length, dtype=xf.dtype, device=xf.device)
    e_store = torch.empty(length, dtype=xf.dtype, device=xf.device)
    t_store = torch.empty(length, dtype=xf.dtype, device=xf.device)
    for shift, log_spatial in shifts:
        m = length - shift
        e, t = e_store[:m], t_store[:m]
        start = torch.tensor(log_spatial, dtype=xf.dtype, device=xf.device)
        for ch in range(gf.shape[0]):
            torch.sub(gf[ch, :m], gf[ch, shift:], out=t)
            if ch == 0:
                torch.addcmul(start, t, t, value=-1.0, out=e)
            else:
                e.addcmul_(t, t, value=-1.0)
        if floor is not None:
            e.clamp_min_(floor)
        e.exp_()  # e[p] = weight between p and p + shift
        den[:m].add_(e)
        den[shift:].add_(e)
        num[:, :m].addcmul_(e, xf[:, shift:])
        num[:, shift:].addcmul_(e, xf[:, :m])
    return num, den


class TorchBackend:
    """Eager-torch joint bilateral filter; the reference every other backend is tested against."""

    name = "torch"
    priority = 10

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
            num, den = _accumulate(xf, gf, shifts)
            num.div_(den)
            out = num.reshape(c, n, d + 2 * r, hp, wp).transpose(0, 1)
            return out[:, :, r : r + d, r : r + h, r : r + w].contiguous()

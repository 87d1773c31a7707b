"""Reference backend: shift-and-accumulate over window offsets in eager torch (any device, O(N) memory).

The window is never unfolded (that costs O(N k^3) memory); instead the loop runs over the (2r+1)^3 offsets
and every step is a handful of whole-tensor elementwise ops on views of a replicate-padded input.

Two savings over the textbook loop:

- symmetry: the range weight of offset +o at p equals that of -o at p+o (|g_p - g_q| is symmetric and the
  spatial Gaussian is even), so one exp over a box grown by |o| serves both taps;
- z-slabs: the volume is processed in slabs along D so that the working set of the ~8 passes per offset
  pair stays in cache instead of streaming through memory.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from voxuda.ops.backends.base import FilterParams

# Elements of one (N, 1, slab, H, W) buffer to aim for: large enough that torch's intra-op threads get
# work (grain 32k), small enough that the padded slab of x and guide plus the buffers stays in L2.
_SLAB_ELEMENTS = 1 << 16


def probe() -> tuple[bool, str]:
    """Availability probe for the registry: torch is a hard dependency, so always available."""
    return True, "torch is always available"


def _half_offsets(radius: int) -> list[tuple[int, int, int]]:
    """Offsets o != 0 with o > 0 in lexicographic order: one of each (+o, -o) pair."""
    rng = range(-radius, radius + 1)
    return [o for o in itertools.product(rng, rng, rng) if o > (0, 0, 0)]


def _filter_slab(
    xp: torch.Tensor, gp: torch.Tensor, out: torch.Tensor, r: int, params: FilterParams
) -> None:
    """Filter one slab: ``xp``/``gp`` are padded by r on every side, ``out`` is the unpadded output slab.

    ``xp`` carries an extra trailing channel of ones, so one ``addcmul_`` per tap accumulates numerator
    and normaliser together.  ``gp`` is already scaled by sqrt(1 / (2 sigma_r^2)) so that the squared guide
    distance is the range exponent; the spatial exponent enters as the constant the first ``addcmul``
    starts from, so sub + addcmul + exp is all it takes to get a weight.
    """
    n, c1, d, h, w = xp.shape[0], xp.shape[1], *out.shape[2:]
    g = gp.shape[1]
    acc = xp[:, :, r : r + d, r : r + h, r : r + w].clone()  # centre tap, weight 1
    big = (n, 1, d + 2 * r, h + 2 * r, w + 2 * r)
    e_store = torch.empty(big, dtype=out.dtype, device=out.device)
    t_store = torch.empty(big, dtype=out.dtype, device=out.device)
    for o in _half_offsets(r):
        start_e = torch.tensor(-params.spatial_exponent(*o), dtype=out.dtype, device=out.device)
        size = (d + abs(o[0]), h + abs(o[1]), w + abs(o[2]))
        start = tuple(r - max(a, 0) for a in o)
        box = tuple(slice(s, s + L) for s, L in zip(start, size))
        sbox = tuple(slice(s + a, s + a + L) for s, a, L in zip(start, o, size))
        e = e_store[:, :, : size[0], : size[1], : size[2]]
        t = t_store[:, :, : size[0], : size[1], : size[2]]
        for ch in range(g):
            base = gp[:, ch : ch + 1, box[0], box[1], box[2]]
            torch.sub(base, gp[:, ch : ch + 1, sbox[0], sbox[1], sbox[2]], out=t)
            if ch == 0:
                torch.addcmul(start_e, t, t, value=-1.0, out=e)
            else:
                e.addcmul_(t, t, value=-1.0)
        e.exp_()
        # e[Q] = weight between Q and Q + o; tap +o at P uses Q = P, tap -o uses Q = P - o.
        for sign in (1, -1):
            a0 = tuple(max(sign * a, 0) for a in o)
            wv = e[:, :, a0[0] : a0[0] + d, a0[1] : a0[1] + h, a0[2] : a0[2] + w]
            q0 = tuple(r + sign * a for a in o)
            acc.addcmul_(wv, xp[:, :, q0[0] : q0[0] + d, q0[1] : q0[1] + h, q0[2] : q0[2] + w])
    torch.div(acc[:, : c1 - 1], acc[:, c1 - 1 :], out=out)


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
        with torch.no_grad():
            scale = math.sqrt(1.0 / (2.0 * params.sigma_range**2))
            pad = (r, r, r, r, r, r)
            ones = torch.ones((n, 1, d, h, w), dtype=x.dtype, device=x.device)
            xp = F.pad(torch.cat([x, ones], dim=1), pad, mode="replicate")
            gp = F.pad(guide * scale, pad, mode="replicate")
            out = torch.empty_like(x)
            slab = max(1, min(d, _SLAB_ELEMENTS // max(1, n * (h + 2 * r) * (w + 2 * r))))
            for z0 in range(0, d, slab):
                z1 = min(d, z0 + slab)
                _filter_slab(
                    xp[:, :, z0 : z1 + 2 * r], gp[:, :, z0 : z1 + 2 * r], out[:, :, z0:z1], r, params
                )
        return out

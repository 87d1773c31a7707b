"""Argument checking and array-type round-tripping shared by the public filter functions.

Every error is a ValueError that names the offending argument, because these functions are called from
configs where the traceback is the only hint the user gets.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from voxuda.ops.backends.base import FilterParams

_FLOATS = (torch.float32, torch.float64)


def as_tensor(arr: Any, name: str) -> tuple[torch.Tensor, bool]:
    """Return (tensor view, was_numpy). numpy arrays are wrapped without a copy where possible."""
    if isinstance(arr, torch.Tensor):
        return arr, False
    if isinstance(arr, np.ndarray):
        if arr.dtype not in (np.float32, np.float64):
            raise ValueError(f"{name} must be float32 or float64, got numpy dtype {arr.dtype}")
        return torch.from_numpy(np.ascontiguousarray(arr)), True
    raise ValueError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(arr).__name__}")


def to_5d(t: torch.Tensor, name: str) -> tuple[torch.Tensor, int]:
    """Accept (D, H, W) or (N, C, D, H, W); return the 5D view and the original rank."""
    if t.ndim == 3:
        return t[None, None], 3
    if t.ndim == 5:
        return t, 5
    raise ValueError(
        f"{name} must have shape (D, H, W) or (N, C, D, H, W), got rank {t.ndim} {tuple(t.shape)}"
    )


def check_float_finite(t: torch.Tensor, name: str) -> None:
    if t.dtype not in _FLOATS:
        raise ValueError(f"{name} must be float32 or float64, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty, shape {tuple(t.shape)}")
    # min and max propagate NaN and show an infinity: one reduction pass with no temporary, where
    # isfinite(t).all() wrote a bool volume first (0.2 vs 3.8 ms for 128^3 on 2 threads)
    if not all(math.isfinite(float(v)) for v in torch.aminmax(t.detach())):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def check_radius(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"radius must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"radius must be >= 0, got {value!r}")
    return int(value)


def check_spacing(value: Any) -> tuple[float, float, float]:
    if not isinstance(value, Sequence) or len(value) != 3:
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {value!r}")
    return tuple(check_positive(v, "spacing") for v in value)  # type: ignore[return-value]


def make_params(radius: Any, sigma_spatial: Any, sigma_range: Any, spacing: Any) -> FilterParams:
    return FilterParams(
        radius=check_radius(radius),
        sigma_spatial=check_positive(sigma_spatial, "sigma_spatial"),
        sigma_range=check_positive(sigma_range, "sigma_range"),
        spacing=check_spacing(spacing),
    )


def check_guide(guide: torch.Tensor, x5: torch.Tensor, x_rank: int) -> torch.Tensor:
    """Bring a guide to (N, G, D, H, W) matching x5 in batch, spatial shape, dtype and device."""
    if guide.ndim == 3 and x_rank == 3:
        g5 = guide[None, None]
    elif guide.ndim == 4 and x_rank == 3:
        g5 = guide[None]  # (G, D, H, W) for a plain 3D volume
    elif guide.ndim == 5:
        g5 = guide
    else:
        raise ValueError(
            f"guide must have shape (N, G, D, H, W) (or (D, H, W)/(G, D, H, W) for a 3D x), "
            f"got {tuple(guide.shape)}"
        )
    if g5.shape[0] != x5.shape[0] or g5.shape[2:] != x5.shape[2:]:
        raise ValueError(
            f"guide shape {tuple(guide.shape)} does not match x: need batch {x5.shape[0]} and spatial "
            f"shape {tuple(x5.shape[2:])}"
        )
    check_float_finite(g5, "guide")
    if g5.device != x5.device:
        raise ValueError(f"guide is on {g5.device} but x is on {x5.device}")
    return g5.to(dtype=x5.dtype).contiguous()


def restore(out5: torch.Tensor, rank: int, was_numpy: bool) -> Any:
    out = out5[0, 0] if rank == 3 else out5
    return out.numpy() if was_numpy else out

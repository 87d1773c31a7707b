"""Baseline denoisers: identity and separable Gaussian smoothing (torch, replicate border)."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from voxuda.checks import positive
from voxuda.denoisers._batch import check_batch


@attrs.define(kw_only=True)
class IdentityConfig:
    """No options: the identity denoiser is the "no denoising" ablation."""


class Identity:
    """Returns its input unchanged (a clone, so callers may modify the result)."""

    name = "identity"

    def __init__(self, config: IdentityConfig | None = None) -> None:
        self.config = config if config is not None else IdentityConfig()
        self.op_backend: str | None = None  # filters through no op backend

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return check_batch(x, self.name).clone()


@attrs.define(kw_only=True)
class GaussianDenoiserConfig:
    """Isotropic Gaussian smoothing in voxel units."""

    sigma: float = attrs.field(
        default=1.0, validator=positive, metadata={"help": "standard deviation of the Gaussian, in voxels"}
    )
    truncate: float = attrs.field(
        default=3.0,
        validator=positive,
        metadata={"help": "kernel half-width in sigmas (radius = round(truncate * sigma), as scipy)"},
    )


def gaussian_kernel1d(
    sigma: float, truncate: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    r = max(1, int(truncate * sigma + 0.5))  # scipy.ndimage convention
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return (k / k.sum()).to(dtype=dtype, device=device)


class GaussianDenoiser:
    """Separable 3D Gaussian (three 1D convolutions), replicate border: the linear baseline for the IBF."""

    name = "gaussian"

    def __init__(self, config: GaussianDenoiserConfig | None = None) -> None:
        self.config = config if config is not None else GaussianDenoiserConfig()
        self.op_backend: str | None = None  # plain torch convolutions, no op backend

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = check_batch(x, self.name)
        n, c, d, h, w = x.shape
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        k = gaussian_kernel1d(self.config.sigma, self.config.truncate, work.dtype, x.device)
        r = (k.numel() - 1) // 2
        y = work.reshape(n * c, 1, d, h, w)
        with torch.no_grad():
            for axis in range(3):
                shape = [1, 1, 1, 1, 1]
                shape[2 + axis] = k.numel()
                pad = [0] * 6
                pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
                y = F.conv3d(F.pad(y, tuple(pad), mode="replicate"), k.reshape(shape))
        return y.reshape(n, c, d, h, w).to(x.dtype)

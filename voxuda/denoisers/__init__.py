"""Denoisers applied to target volumes in front of the teacher (callables on (N, C, D, H, W) tensors)."""

from voxuda.denoisers.basic import GaussianDenoiser, GaussianDenoiserConfig, Identity, IdentityConfig
from voxuda.denoisers.bilateral import (
    BilateralDenoiser,
    BilateralDenoiserConfig,
    ImprovedBilateralDenoiser,
    ImprovedBilateralDenoiserConfig,
)

__all__ = [
    "BilateralDenoiser",
    "BilateralDenoiserConfig",
    "GaussianDenoiser",
    "GaussianDenoiserConfig",
    "Identity",
    "IdentityConfig",
    "ImprovedBilateralDenoiser",
    "ImprovedBilateralDenoiserConfig",
]

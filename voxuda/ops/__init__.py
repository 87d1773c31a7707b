"""3D filtering operators: joint / improved bilateral filters with pluggable backends.

See docs/ops.md for the API, units, backends and how the CUDA kernel is verified without a GPU.
"""

from voxuda.ops.backends import (
    BackendChoice,
    BackendStatus,
    ResolvedBackend,
    available_backends,
    resolve_backend,
)
from voxuda.ops.bilateral import bilateral3d, improved_bilateral3d
from voxuda.ops.chunked import bilateral3d_chunked, improved_bilateral3d_chunked
from voxuda.ops.guides import GUIDE_REACH, GUIDES, laplacian_gradient_guide, sobel_gradient_guide

__all__ = [
    "GUIDES",
    "GUIDE_REACH",
    "BackendChoice",
    "BackendStatus",
    "ResolvedBackend",
    "available_backends",
    "bilateral3d",
    "bilateral3d_chunked",
    "improved_bilateral3d",
    "improved_bilateral3d_chunked",
    "laplacian_gradient_guide",
    "resolve_backend",
    "sobel_gradient_guide",
]

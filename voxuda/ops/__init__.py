"""3D filtering operators: joint / improved bilateral filters with pluggable backends.

See docs/ops.md for the API, units, backends and how the CUDA kernel is verified without a GPU.
"""

from voxuda.ops.backends import (
    BUILTIN_BACKENDS,
    BackendStatus,
    available_backends,
    register_backend_provider,
    resolve_backend,
    unregister_backend_provider,
)
from voxuda.ops.bilateral import bilateral3d, improved_bilateral3d, last_backend_used
from voxuda.ops.chunked import bilateral3d_chunked, improved_bilateral3d_chunked
from voxuda.ops.guides import GUIDE_REACH, GUIDES, laplacian_gradient_guide, sobel_gradient_guide

__all__ = [
    "BUILTIN_BACKENDS",
    "GUIDES",
    "GUIDE_REACH",
    "BackendStatus",
    "available_backends",
    "bilateral3d",
    "bilateral3d_chunked",
    "improved_bilateral3d",
    "improved_bilateral3d_chunked",
    "laplacian_gradient_guide",
    "last_backend_used",
    "register_backend_provider",
    "resolve_backend",
    "sobel_gradient_guide",
    "unregister_backend_provider",
]

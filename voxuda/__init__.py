"""voxuda: voxel-wise unsupervised domain adaptation for cryo-ET subtomogram segmentation.

Importing the package is deliberately cheap: it imports neither torch nor any plugin. The public
functions are resolved on first attribute access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voxuda._version import __version__

__all__ = [
    "__version__",
    "build_method",
    "build_component",
    "list_components",
    "describe",
    "hookimpl",
    "PLUGIN_API_VERSION",
]

_LAZY = {
    "build_method": ("voxuda.api", "build_method"),
    "build_component": ("voxuda.api", "build_component"),
    "list_components": ("voxuda.api", "list_components"),
    "describe": ("voxuda.api", "describe"),
    "hookimpl": ("voxuda.hookspecs", "hookimpl"),
    "PLUGIN_API_VERSION": ("voxuda.hookspecs", "PLUGIN_API_VERSION"),
}

if TYPE_CHECKING:  # pragma: no cover
    from voxuda.api import build_component, build_method, describe, list_components
    from voxuda.hookspecs import PLUGIN_API_VERSION, hookimpl


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'voxuda' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

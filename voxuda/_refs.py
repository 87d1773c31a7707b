"""Resolution of ``"module:attr"`` string references used by registrations."""

from __future__ import annotations

import importlib
from typing import Any

from voxuda.errors import PluginError


def import_ref(ref: str, *, what: str = "reference") -> Any:
    """Import ``"package.module:attr.sub"``; raise a one-line ``PluginError`` on failure."""
    module_name, sep, attr_path = ref.partition(":")
    if not sep or not module_name or not attr_path:
        raise PluginError(f"{what} {ref!r} is not of the form 'module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"{what} {ref!r}: cannot import {module_name!r} ({exc})") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise PluginError(f"{what} {ref!r}: {module_name!r} has no attribute {attr_path!r}") from exc
    return obj

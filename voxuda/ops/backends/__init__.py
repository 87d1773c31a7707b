"""Backend discovery for the bilateral filter.

Sources, merged in this order (a later source replaces an earlier one of the same name):

1. :data:`BUILTIN_BACKENDS`, a static name -> "module:Class" table, so the ops work without the registry;
2. the plugin registry, if ``voxuda.registry`` imports: every ``list_specs("op")`` entry whose factory
   builds an object that quacks like a backend (``is_available``, ``supports``, ``bilateral3d``);
3. providers added with :func:`register_backend_provider` (tests, experiments).

``"auto"`` takes the highest-priority backend that is available and supports the given inputs; the name
actually used is kept for :func:`voxuda.ops.last_backend_used` so runs can record it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import torch

from voxuda.ops.backends.base import BilateralBackend, FilterParams

BUILTIN_BACKENDS: dict[str, str] = {
    "torch": "voxuda.ops.backends.torch_backend:TorchBackend",
    "numba": "voxuda.ops.backends.numba_backend:NumbaBackend",
    "cupy": "voxuda.ops.backends.cupy_backend:CupyBackend",
}

BackendProvider = Callable[[], Iterable[BilateralBackend]]
_providers: list[BackendProvider] = []
_instances: dict[str, BilateralBackend] = {}


@attrs.frozen
class BackendStatus:
    """One row of :func:`available_backends`: what exists, whether it runs here, and why not."""

    name: str
    priority: int
    available: bool
    reason: str
    source: str


def register_backend_provider(provider: BackendProvider) -> None:
    """Add a callable returning backend instances; consulted on every lookup (cheap, no caching)."""
    if provider not in _providers:
        _providers.append(provider)


def unregister_backend_provider(provider: BackendProvider) -> None:
    if provider in _providers:
        _providers.remove(provider)


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _is_backend(obj: Any) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("is_available", "supports", "bilateral3d")) and all(
        hasattr(obj, a) for a in ("name", "priority")
    )


def _builtin(name: str) -> BilateralBackend:
    if name not in _instances:
        _instances[name] = _load(BUILTIN_BACKENDS[name])()
    return _instances[name]


def _from_registry() -> list[BilateralBackend]:
    """Backends the plugin registry knows about; any failure there means "none" (it is optional here)."""
    try:
        registry = importlib.import_module("voxuda.registry")
        specs = registry.list_specs("op")
    except (ImportError, AttributeError, LookupError, ValueError, TypeError):
        return []
    except Exception:  # a half-initialised registry must not break filtering
        return []
    found: list[BilateralBackend] = []
    for spec in specs:
        try:
            factory = spec.load_factory()
            key = f"registry:{spec.name}:{getattr(spec, 'factory', factory)!s}"
            if key not in _instances:
                _instances[key] = factory()
            obj = _instances[key]
        except Exception:
            continue
        if _is_backend(obj):
            found.append(obj)
    return found


def _all_backends() -> dict[str, tuple[BilateralBackend, str]]:
    table: dict[str, tuple[BilateralBackend, str]] = {}
    for name in BUILTIN_BACKENDS:
        table[name] = (_builtin(name), "builtin")
    for b in _from_registry():
        table[b.name] = (b, "registry")
    for provider in list(_providers):
        for b in provider():
            if _is_backend(b):
                table[b.name] = (b, "provider")
    return table


def available_backends() -> list[BackendStatus]:
    """Every known backend with its availability probe result, highest priority first."""
    rows = []
    for name, (b, source) in _all_backends().items():
        try:
            ok, reason = b.is_available()
        except Exception as exc:  # a probe must never raise into the caller
            ok, reason = False, f"probe failed: {exc}"
        rows.append(BackendStatus(name, int(b.priority), bool(ok), str(reason), source))
    return sorted(rows, key=lambda s: (-s.priority, s.name))


def resolve_backend(
    name: str = "auto",
    x: torch.Tensor | None = None,
    guide: torch.Tensor | None = None,
    params: FilterParams | None = None,
) -> BilateralBackend:
    """Return the backend called ``name``, or for "auto" the best one that can run these inputs.

    Without inputs, "auto" only checks availability.  An explicitly named backend that is unavailable or
    cannot handle the inputs raises ValueError with its reason instead of silently falling back.
    """
    table = _all_backends()
    if not isinstance(name, str):
        raise ValueError(f"backend must be a string, got {name!r}")
    if name != "auto":
        if name not in table:
            raise ValueError(f"backend {name!r} is unknown; known: {sorted(table)} or 'auto'")
        b = table[name][0]
        ok, reason = b.is_available()
        if not ok:
            raise ValueError(f"backend {name!r} is not available: {reason}")
        if x is not None and guide is not None and params is not None:
            ok, reason = b.supports(x, guide, params)
            if not ok:
                raise ValueError(f"backend {name!r} cannot filter these inputs: {reason}")
        return b
    reasons = []
    for status in available_backends():
        b = table[status.name][0]
        if not status.available:
            reasons.append(f"{status.name}: {status.reason}")
            continue
        if x is not None and guide is not None and params is not None:
            ok, reason = b.supports(x, guide, params)
            if not ok:
                reasons.append(f"{status.name}: {reason}")
                continue
        return b
    raise ValueError("no bilateral backend can run these inputs: " + "; ".join(reasons))


__all__ = [
    "BUILTIN_BACKENDS",
    "BackendStatus",
    "available_backends",
    "register_backend_provider",
    "resolve_backend",
    "unregister_backend_provider",
]

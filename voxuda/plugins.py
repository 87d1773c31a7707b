"""Plugin loading: the built-ins, then every entry point of the group ``voxuda``, each in isolation.

We iterate entry points with our own loop instead of pluggy's ``load_setuptools_entrypoints`` because that
helper neither isolates import errors (one broken plugin would break every command) nor tells us the
distribution behind each plugin, which we need to report collisions and provenance.

Environment:
- ``VOXUDA_DISABLE_PLUGIN_AUTOLOAD=1``: only built-ins (and plugins added with :func:`add_plugin`).
- ``VOXUDA_STRICT_PLUGINS=1``: any failure or name conflict raises instead of being recorded (CI uses it).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

import pluggy

from voxuda import hookspecs
from voxuda._version import __version__
from voxuda.errors import PluginError
from voxuda.registry import BUILTIN_PLUGIN, ComponentSpec, PluginFailure, Registry

ENTRY_POINT_GROUP = "voxuda"
_lock = threading.RLock()
_registry: Registry | None = None
_extra_plugins: list[tuple[str, Any]] = []


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def strict_mode() -> bool:
    return _env_flag("VOXUDA_STRICT_PLUGINS")


def autoload_disabled() -> bool:
    return _env_flag("VOXUDA_DISABLE_PLUGIN_AUTOLOAD")


def iter_entry_points() -> Iterable[metadata.EntryPoint]:
    """Entry points of the ``voxuda`` group (a seam that tests replace with fake entry points)."""
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def add_plugin(plugin: Any, name: str) -> None:
    """Register a plugin object by hand (a notebook, a test) without packaging it; resets the registry."""
    with _lock:
        _extra_plugins.append((name, plugin))
        reset()


def remove_plugin(name: str) -> None:
    """Take back a plugin added with :func:`add_plugin` (a test's clean-up); resets the registry."""
    with _lock:
        _extra_plugins[:] = [(n, p) for n, p in _extra_plugins if n != name]
        reset()


def reset() -> None:
    """Forget the loaded registry so that the next use loads plugins again."""
    global _registry
    with _lock:
        _registry = None


def get_registry() -> Registry:
    """The process-wide registry, filled on first use (never at ``import voxuda``)."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = _build_registry()
        return _registry


def list_specs(kind: str | None = None) -> list[ComponentSpec]:
    """Every registered spec (of one ``kind`` or all), sorted by name within each kind."""
    return get_registry().list(kind)


def resolve(kind: str, name: str) -> ComponentSpec:
    """The spec of ``kind`` called ``name`` (bare, alias or ``plugin:name``) in the process-wide registry."""
    return get_registry().resolve(kind, name)


def _check_api_version(plugin: Any, name: str) -> None:
    declared = getattr(plugin, "VOXUDA_PLUGIN_API_VERSION", None)
    if declared is None:
        return
    ours = hookspecs.PLUGIN_API_VERSION.split(".")[0]
    theirs = str(declared).split(".")[0]
    if theirs != ours:
        raise PluginError(
            f"plugin {name!r} was written for voxuda plugin API {declared}, this voxuda provides "
            f"{hookspecs.PLUGIN_API_VERSION}; install a version of the plugin made for it"
        )


def _build_registry() -> Registry:
    registry = Registry()
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    strict = strict_mode()
    origins: dict[str, tuple[str | None, str | None]] = {}

    def fail(plugin: str, distribution: str | None, error: str) -> None:
        if strict:
            raise PluginError(f"plugin {plugin!r} ({distribution or 'no distribution'}): {error}")
        registry.failures.append(PluginFailure(plugin, distribution, error))

    from voxuda import builtin

    manager.register(builtin, name=BUILTIN_PLUGIN)
    origins[BUILTIN_PLUGIN] = ("voxuda", __version__)

    candidates: list[tuple[str, Callable[[], Any], str | None, str | None]] = [
        (name, functools.partial(lambda p: p, obj), None, None) for name, obj in _extra_plugins
    ]
    if not autoload_disabled():
        for ep in iter_entry_points():
            dist = getattr(ep, "dist", None)
            candidates.append((ep.name, ep.load, getattr(dist, "name", None), getattr(dist, "version", None)))

    for name, load, dist_name, dist_version in candidates:
        if name in origins:
            fail(name, dist_name, f"plugin name {name!r} is already used by {origins[name][0]}")
            continue
        try:
            plugin = load()
            _check_api_version(plugin, name)
            manager.register(plugin, name=name)
        except Exception as exc:  # isolation: one broken plugin must not break the others
            fail(name, dist_name, f"failed to load: {type(exc).__name__}: {exc}")
            continue
        origins[name] = (dist_name, dist_version)

    # Each hook implementation is called on its own with a register callback bound to its plugin, so a
    # failure is attributed to (and contained in) the plugin that caused it.
    for hook_name, kind in hookspecs.HOOK_KINDS.items():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            dist_name, dist_version = origins.get(impl.plugin_name, (None, None))
            register = _make_register(registry, kind, impl.plugin_name, dist_name, dist_version)
            try:
                impl.function(register=register)
            except Exception as exc:
                if strict and isinstance(exc, PluginError):
                    raise
                fail(impl.plugin_name, dist_name, f"{hook_name} failed: {type(exc).__name__}: {exc}")

    for name, (dist_name, dist_version) in origins.items():
        registry.loaded_plugins.append((name, dist_name, dist_version))
    if strict:
        conflicts = registry.conflicts()
        if conflicts:
            kind, claimed, specs = conflicts[0]
            owners = " and ".join(f"{s.plugin} ({s.distribution})" for s in specs)
            raise PluginError(f"{kind} name {claimed!r} is registered by both {owners}")
    return registry


def _make_register(
    registry: Registry, kind: str, plugin: str, distribution: str | None, version: str | None
) -> hookspecs.RegisterFn:
    def register(
        name: str,
        *,
        factory: str,
        config: str | None = None,
        aliases: Iterable[str] = (),
        summary: str = "",
        priority: int = 0,
        probe: str | None = None,
    ) -> None:
        registry.add(
            ComponentSpec(
                kind=kind,
                name=name,
                factory=factory,
                plugin=plugin,
                config=config,
                aliases=tuple(aliases),
                summary=summary,
                distribution=distribution,
                version=version,
                priority=int(priority),
                probe=probe,
            )
        )

    return register

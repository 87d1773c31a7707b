"""Component specs and name resolution.

The registry is filled by :mod:`voxuda.plugins` (built-ins first, through the same hooks a third-party
plugin uses) and answers "which component is called X?". This module holds data and rules only: the
process-wide registry and its loading (:func:`voxuda.plugins.get_registry`, ``list_specs``, ``resolve``)
live in :mod:`voxuda.plugins`, which imports this module and never the other way round. Rules, from
docs/plugins.md:

- names are lowercase snake_case; a bare name must be unique across plugins, ``plugin:name`` always works;
- a third-party plugin may not register a name (or alias) the built-ins already use: that is an error
  recorded against the plugin, never a silent override;
- two third-party plugins claiming one name are both kept; the bare name then fails with an error naming
  both distributions, and the qualified names keep working.
"""

from __future__ import annotations

import builtins  # annotations inside Registry, where `list` names the method
import difflib
import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from voxuda._refs import import_ref
from voxuda.errors import AmbiguousComponentError, PluginError, UnknownComponentError
from voxuda.hookspecs import HOOK_KINDS

KINDS: tuple[str, ...] = tuple(HOOK_KINDS.values())
BUILTIN_PLUGIN = "voxuda"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@attrs.frozen
class ComponentSpec:
    """Everything known about one registered component, without importing it."""

    kind: str
    name: str
    factory: str
    plugin: str
    config: str | None = None
    aliases: tuple[str, ...] = ()
    summary: str = ""
    distribution: str | None = None
    version: str | None = None
    priority: int = 0
    probe: str | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"

    @property
    def builtin(self) -> bool:
        return self.plugin == BUILTIN_PLUGIN

    def load_factory(self) -> Callable[..., Any]:
        return import_ref(self.factory, what=f"factory of {self.kind} {self.qualified_name!r}")

    def load_config_class(self) -> type | None:
        if self.config is None:
            return None
        cls = import_ref(self.config, what=f"config of {self.kind} {self.qualified_name!r}")
        if not attrs.has(cls):
            raise PluginError(
                f"config of {self.kind} {self.qualified_name!r} ({self.config}) is not an attrs class"
            )
        return cls

    def is_available(self) -> tuple[bool, str]:
        """Run the availability probe (op backends); components without one are always available."""
        if self.probe is None:
            return True, ""
        try:
            available, reason = import_ref(self.probe, what=f"probe of {self.qualified_name!r}")()
        except Exception as exc:  # a probe must never take the registry down
            return False, f"probe failed: {exc}"
        return bool(available), str(reason)

    def provenance(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "factory": self.factory,
        }


@attrs.define
class PluginFailure:
    """A plugin that could not load or register, kept so that it can be shown instead of crashing."""

    plugin: str
    distribution: str | None
    error: str


@attrs.define
class Registry:
    """All component specs of all kinds, plus the failures seen while filling it."""

    specs: dict[str, dict[str, ComponentSpec]] = attrs.field(factory=lambda: {k: {} for k in KINDS})
    failures: list[PluginFailure] = attrs.field(factory=list)
    loaded_plugins: list[tuple[str, str | None, str | None]] = attrs.field(factory=list)

    # -- filling ---------------------------------------------------------------------------------
    def add(self, spec: ComponentSpec) -> None:
        if spec.kind not in KINDS:
            raise PluginError(f"plugin {spec.plugin!r}: unknown component kind {spec.kind!r}")
        if not _NAME_RE.match(spec.name):
            raise PluginError(
                f"plugin {spec.plugin!r}: component name {spec.name!r} must be lowercase snake_case"
            )
        table = self.specs[spec.kind]
        if spec.qualified_name in table:
            raise PluginError(f"plugin {spec.plugin!r} registers {spec.kind} {spec.name!r} twice")
        if not spec.builtin:
            for claimed in (spec.name, *spec.aliases):
                owner = self._builtin_owner(spec.kind, claimed)
                if owner is not None:
                    raise PluginError(
                        f"plugin {spec.plugin!r} ({spec.distribution}) may not register {spec.kind} "
                        f"{claimed!r}: the built-in {owner.qualified_name!r} uses that name; choose another"
                    )
        table[spec.qualified_name] = spec

    def _builtin_owner(self, kind: str, name: str) -> ComponentSpec | None:
        for spec in self.specs[kind].values():
            if spec.builtin and (spec.name == name or name in spec.aliases):
                return spec
        return None

    # -- queries ---------------------------------------------------------------------------------
    def list(self, kind: str | None = None) -> list[ComponentSpec]:
        kinds: Iterable[str] = KINDS if kind is None else (self._check_kind(kind),)
        return [spec for k in kinds for spec in sorted(self.specs[k].values(), key=lambda s: s.name)]

    def conflicts(self) -> builtins.list[tuple[str, str, builtins.list[ComponentSpec]]]:
        """Bare names claimed by more than one plugin, as ``(kind, name, specs)``."""
        found = []
        for kind in KINDS:
            by_name: dict[str, list[ComponentSpec]] = {}
            for spec in self.specs[kind].values():
                for claimed in (spec.name, *spec.aliases):
                    by_name.setdefault(claimed, []).append(spec)
            found += [(kind, name, specs) for name, specs in sorted(by_name.items()) if len(specs) > 1]
        return found

    def resolve(self, kind: str, name: str) -> ComponentSpec:
        """Find the spec called ``name`` (bare, alias or ``plugin:name``) among components of ``kind``."""
        self._check_kind(kind)
        table = self.specs[kind]
        if ":" in name:
            if name in table:
                return table[name]
            plugin, _, bare = name.partition(":")
            matches = [s for s in table.values() if s.plugin == plugin and bare in s.aliases]
            if matches:
                return matches[0]
            raise self._unknown(kind, name)
        matches = [s for s in table.values() if s.name == name or name in s.aliases]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise self._unknown(kind, name)
        owners = ", ".join(
            f"{s.qualified_name!r} from {s.distribution or 'unknown distribution'}" for s in matches
        )
        raise AmbiguousComponentError(
            f"{kind} name {name!r} is claimed by several plugins ({owners}); use a qualified name"
        )

    def find_any(self, name: str) -> builtins.list[ComponentSpec]:
        """Specs of any kind called ``name``, for commands such as ``voxuda describe NAME``."""
        found = []
        for kind in KINDS:
            try:
                found.append(self.resolve(kind, name))
            except UnknownComponentError:
                continue
        return found

    def unknown_any(self, name: str) -> UnknownComponentError:
        """The error for a name that no kind knows, with suggestions drawn from every kind."""
        names = sorted({n for k in KINDS for s in self.specs[k].values() for n in (s.name, *s.aliases)})
        hint = difflib.get_close_matches(name.split(":")[-1], names, n=3)
        did = f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
        failed = ""
        if self.failures:
            failed = "; plugins that failed to load: " + ", ".join(f.plugin for f in self.failures)
        return UnknownComponentError(
            f"no component called {name!r}{did} (run 'voxuda plugins' for the full list){failed}"
        )

    def _check_kind(self, kind: str) -> str:
        if kind not in KINDS:
            hint = difflib.get_close_matches(kind, KINDS, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise UnknownComponentError(f"unknown component kind {kind!r}{extra} (kinds: {', '.join(KINDS)})")
        return kind

    def _unknown(self, kind: str, name: str) -> UnknownComponentError:
        names = sorted({n for s in self.specs[kind].values() for n in (s.name, *s.aliases)})
        hint = difflib.get_close_matches(name.split(":")[-1], names, n=3)
        parts = [f"unknown {kind} {name!r}"]
        if hint:
            parts.append(f"did you mean {', '.join(repr(h) for h in hint)}?")
        parts.append(f"available: {', '.join(names) or 'none'}")
        if self.failures:
            failed = ", ".join(f"{f.plugin} ({f.error})" for f in self.failures)
            parts.append(f"plugins that failed to load: {failed}")
        return UnknownComponentError("; ".join(parts))

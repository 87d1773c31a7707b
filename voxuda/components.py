"""Sub-components: built from the config field that declares them, and recorded for ``run.json`` in one call.

A method or validator whose config names other registered components (``ref_field(..., kind=...)``) builds
each with :meth:`SubComponents.build_sub` and reports them with :meth:`SubComponents.components`. Building
by hand (``build_component(kind, config.x)``) and recording by hand are two steps that drift apart: the
validators built their denoisers and recorded nothing, and a field whose kind had to be guessed from its name
went unrecorded when the guess failed.
"""

from __future__ import annotations

from typing import Any

from voxuda.config import ComponentRef, apply_overrides, component_fields, component_ref


def component_record(kind: str, ref: ComponentRef) -> dict[str, Any]:
    """Registry provenance (plugin, distribution, version, factory) and the resolved config of a component."""
    from voxuda.api import resolved_config
    from voxuda.plugins import resolve

    return {**resolve(kind, ref.name).provenance(), "config": resolved_config(kind, ref)}


class SubComponents:
    """Mixin for objects with an attrs ``config`` (methods, validators) that build the components it names."""

    config: Any

    def build_sub(self, field: str, *, frozen: bool = False, **params: Any) -> Any:
        """Build the component that config field ``field`` names, as the kind the field declares, and record
        it for :meth:`components`.

        ``params`` are parameters the owner adds to the configured ones (a backbone's ``in_channels`` and
        ``num_classes``); they are recorded with the component, so ``run.json`` holds what was built.
        ``frozen`` turns off the gradients of a module's parameters: a denoiser in front of a network is a
        fixed transform, not something the optimiser trains.
        """
        declared = {key: (kind, ref) for key, kind, ref in component_fields(self.config)}
        if field not in declared:
            known = ", ".join(declared) or "none"
            raise LookupError(f"{type(self.config).__qualname__} has no set component field {field!r} "
                              f"(component fields: {known})")
        kind, ref = declared[field]
        if params:
            ref = component_ref(apply_overrides(ref.to_dict(), params))
        from voxuda.api import build_component

        component = build_component(kind, ref)
        if frozen and hasattr(component, "parameters"):
            for parameter in component.parameters():
                parameter.requires_grad_(False)
        self._built_refs()[field] = (kind, ref)
        self._built_objects()[field] = component
        return component

    def op_backends(self) -> dict[str, str]:
        """Op backend each built sub-component filters on (field -> registered backend), for ``run.json``.

        Read from the components themselves (a bilateral denoiser records the backend it resolved), so the
        record says what ran, not what the config asked for; components without one are left out."""
        found = {key: getattr(built, "op_backend", None) for key, built in self._built_objects().items()}
        return {key: name for key, name in found.items() if name is not None}

    def components(self) -> dict[str, Any]:
        """Provenance and resolved config of every component the config declares (field -> record, for
        ``run.json``), whether or not this object built it through :meth:`build_sub`; built ones are
        recorded with the parameters :meth:`build_sub` added."""
        refs = {key: (kind, ref) for key, kind, ref in component_fields(getattr(self, "config", None))}
        refs.update(self._built_refs())
        return {key: component_record(kind, ref) for key, (kind, ref) in refs.items()}

    def _built_refs(self) -> dict[str, tuple[str, ComponentRef]]:
        # Created on first use rather than in __init__: subclasses (plugins' too) need not call a mixin's
        # __init__, and torch modules keep a plain dict in __dict__ like any object.
        refs: dict[str, tuple[str, ComponentRef]] = vars(self).setdefault("_sub_component_refs", {})
        return refs

    def _built_objects(self) -> dict[str, Any]:
        built: dict[str, Any] = vars(self).setdefault("_sub_component_objects", {})
        return built

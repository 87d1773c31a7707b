"""The public entry points re-exported lazily by ``voxuda/__init__.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from voxuda.config import ComponentRef, FieldDoc, apply_overrides, component_ref, describe_fields, structure
from voxuda.plugins import get_registry
from voxuda.protocols import check_component
from voxuda.registry import ComponentSpec


def _as_ref(name_or_config: str | Mapping[str, Any] | ComponentRef) -> ComponentRef:
    return component_ref(name_or_config)


def component_config(
    kind: str, name_or_config: str | Mapping[str, Any] | ComponentRef, **overrides: Any
) -> tuple[ComponentSpec, Any]:
    """Resolve a component and structure its config (with dotted ``overrides``) without building it."""
    ref = _as_ref(name_or_config)
    spec = get_registry().resolve(kind, ref.name)
    params = apply_overrides(dict(ref.params), overrides) if overrides else dict(ref.params)
    config_cls = spec.load_config_class()
    if config_cls is None:
        return spec, params
    return spec, structure(config_cls, params, where=f"{kind} {spec.name!r}")


def resolved_config(kind: str, name_or_config: str | Mapping[str, Any] | ComponentRef) -> dict[str, Any]:
    """The full config of a component with every default filled in (for ``config.toml`` of a run), the
    sub-components its config names (:func:`~voxuda.config.component_fields`) resolved the same way."""
    from voxuda.config import component_fields, set_dotted, unstructure

    spec, config = component_config(kind, name_or_config)
    data = unstructure(config) if attrs.has(type(config)) else dict(config)
    for field, sub_kind, ref in component_fields(config):
        set_dotted(data, field.split("."), resolved_config(sub_kind, ref))
    return {"name": spec.name, **data}


def build_component(
    kind: str, name_or_config: str | Mapping[str, Any] | ComponentRef, **overrides: Any
) -> Any:
    """Build a registered component of ``kind`` from a name, a ``{"name": ..., **params}`` table or a ref.

    ``overrides`` may use dotted keys (``**{"noise.sigma": 0.5}``) to reach into sub-component tables.
    A backbone, denoiser, noise model or op backend is checked against its kind's protocol
    (:mod:`voxuda.protocols`), so a plugin component missing a member fails here, naming the plugin, rather
    than deep inside a training step.
    """
    spec, config = component_config(kind, name_or_config, **overrides)
    factory = spec.load_factory()
    built = factory(**config) if spec.config is None else factory(config)
    check_component(spec.kind, built, spec)
    return built


def build_method(name_or_config: str | Mapping[str, Any] | ComponentRef, **overrides: Any) -> Any:
    """Build an adaptation method, e.g. ``build_method("vox_uda", ema_momentum=0.99)``."""
    return build_component("method", name_or_config, **overrides)


def list_components(kind: str | None = None) -> list[ComponentSpec]:
    """Every registered component (of one ``kind`` or all), built-in and third-party alike."""
    return get_registry().list(kind)


@attrs.frozen
class ComponentDescription:
    spec: ComponentSpec
    doc: str
    fields: list[FieldDoc]


def describe(name: str, kind: str | None = None) -> list[ComponentDescription]:
    """Describe the component(s) called ``name``: summary, config fields, defaults and help."""
    registry = get_registry()
    specs = [registry.resolve(kind, name)] if kind else registry.find_any(name)
    if not specs:
        raise registry.unknown_any(name)
    out = []
    for spec in specs:
        config_cls = spec.load_config_class()
        fields = describe_fields(config_cls) if config_cls is not None else []
        doc = ""
        if config_cls is not None and config_cls.__doc__:
            doc = config_cls.__doc__.strip().splitlines()[0]
        out.append(ComponentDescription(spec=spec, doc=spec.summary or doc, fields=fields))
    return out

"""Typed configuration: attrs classes, TOML files, dotted overrides and helpful errors.

Every component has an attrs config class. A field that names a sub-component (a backbone, a noise model,
a denoiser) is a :class:`ComponentRef`, written in TOML either as a bare name (``noise = "ngm"``) or as a
table (``[method.noise] name = "ngm"  n_samples = 5``); its parameters are checked against the
sub-component's own config class when the parent is built, so an ablation is a config change.

Values from the command line (``--set method.ema_momentum=0.99``) are parsed as TOML values, never
``eval``-ed; a value that is not valid TOML is taken as a plain string.
"""

from __future__ import annotations

import difflib
import enum
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import attrs

from voxuda.errors import ConfigError, PluginError
from voxuda.hookspecs import HOOK_KINDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@attrs.define(frozen=True)
class ComponentRef:
    """A registered component named in a config, with the parameters of its own config class."""

    name: str
    params: Mapping[str, Any] = attrs.field(factory=dict)

    def with_params(self, **params: Any) -> ComponentRef:
        return ComponentRef(self.name, {**self.params, **params})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{k: _plain(v) for k, v in self.params.items()}}


def component_ref(value: Any) -> ComponentRef:
    """attrs converter: a name, a ``{"name": ..., **params}`` table, or a ComponentRef."""
    if isinstance(value, ComponentRef):
        return value
    if isinstance(value, str):
        return ComponentRef(value)
    if isinstance(value, Mapping):
        if "name" not in value:
            raise ConfigError(f"component table {dict(value)!r} needs a 'name' key")
        params = {k: v for k, v in value.items() if k != "name"}
        return ComponentRef(str(value["name"]), params)
    raise ConfigError(f"expected a component name or table, got {type(value).__name__} {value!r}")


def ref_field(
    default: str | None,
    *,
    kind: str,
    help: str,
    converter: Callable[[Any], ComponentRef] | None = None,
    **params: Any,
) -> Any:
    """An attrs field holding a :class:`ComponentRef` of a declared ``kind`` (a registry kind: ``backbone``,
    ``noise_model``, ``denoiser``, ``aligner``, ``validator``, ...) with a default component.

    The kind is declared here, never guessed from the field's name, because everything that walks a config's
    sub-components (:func:`component_fields`: the run-config check, the resolved ``config.toml``, a method's
    ``components()`` in ``run.json``) reads it from the field. ``kind`` is a required keyword, so a component
    field without one fails when its class is defined (at import, in the first test that touches it) rather
    than being skipped by those walks; an unknown kind fails there too. ``default=None`` makes the field
    optional (unset = no component). ``converter`` replaces :func:`component_ref` for fields that normalise
    their ref (it must return a ComponentRef); ``params`` are the default component's parameters.
    """
    if kind not in HOOK_KINDS.values():
        known = ", ".join(HOOK_KINDS.values())
        raise ValueError(f"ref_field kind {kind!r} is not a component kind ({known})")
    convert = converter or component_ref
    return attrs.field(
        default=None if default is None else ComponentRef(default, params),
        converter=attrs.converters.optional(convert) if default is None else convert,
        metadata={"help": help, "component": True, "kind": kind},
    )


def component_fields(config: Any, prefix: str = "") -> list[tuple[str, str, ComponentRef]]:
    """``(field, kind, ref)`` of every component an attrs config names, in field order.

    Nested plain config tables (``RunConfig.data``) are walked too, their fields named with dots
    (``data.alignment``); a component's own config is not (resolve the ref and walk that config: it may
    come from a plugin). Unset optional refs are left out. A field that holds a ComponentRef without a
    declared kind (a hand-written ``attrs.field``) raises :class:`~voxuda.errors.PluginError` naming the
    field, since nothing could check or record it.
    """
    if not attrs.has(type(config)) or isinstance(config, ComponentRef):
        return []
    found: list[tuple[str, str, ComponentRef]] = []
    for field in attrs.fields(type(config)):
        value = getattr(config, field.name)
        key = f"{prefix}{field.name}"
        kind = field.metadata.get("kind")
        if kind is not None:
            if value is not None:
                found.append((key, str(kind), value))
        elif isinstance(value, ComponentRef) or field.metadata.get("component"):
            raise PluginError(
                f"{type(config).__qualname__}.{field.name} holds a component but declares no kind; "
                "declare it with voxuda.config.ref_field(..., kind=...)"
            )
        elif attrs.has(type(value)):
            found.extend(component_fields(value, f"{key}."))
    return found


def help_field(default: Any = attrs.NOTHING, *, help: str, validator: Any = None, **kwargs: Any) -> Any:
    """An attrs field with a one-line help string (shown by ``voxuda describe``)."""
    if isinstance(default, (list, dict, set)):
        value = default
        return attrs.field(
            factory=lambda: type(value)(value), metadata={"help": help}, validator=validator, **kwargs
        )
    return attrs.field(default=default, metadata={"help": help}, validator=validator, **kwargs)


# -- structuring ----------------------------------------------------------------------------------------
def structure(cls: type, data: Mapping[str, Any] | None, where: str = "config") -> Any:
    """Build attrs instance ``cls`` from plain data, with one-line errors naming ``where.key``."""
    data = dict(data or {})
    attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(key, list(fields), n=1)
        did = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"{where}: unknown key {key!r}{did} (known keys: {', '.join(sorted(fields))})")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(value, fields[key].type, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce(value: Any, tp: Any, where: str) -> Any:
    if tp is None or tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is ComponentRef:
        return component_ref(value)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {value!r} is not one of {[m.value for m in tp]}") from exc
    if isinstance(tp, type) and attrs.has(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
        return structure(tp, value, where)
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin in (dict, Mapping) or tp in (dict,):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {type(value).__name__} {value!r}")
        return Path(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, ComponentRef):
        return value.to_dict()
    if attrs.has(type(value)):
        return unstructure(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def unstructure(instance: Any) -> dict[str, Any]:
    """Plain TOML-ready data of an attrs config (``None`` values are dropped: TOML has no null)."""
    out = {}
    for f in attrs.fields(type(instance)):
        value = getattr(instance, f.name)
        if value is not None:
            out[f.name] = _plain(value)
    return out


# -- files and overrides ---------------------------------------------------------------------------------
def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found; check the path") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc}); fix the file") from exc


def dump_toml(data: Mapping[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(_plain(dict(data)))


def parse_value(text: str) -> Any:
    """Parse a command-line value as TOML (``0.99``, ``true``, ``[1, 2]``, ``"x"``); else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} must look like 'section.key=value'")
    return key.split("."), parse_value(raw.strip())


def component_overrides(
    items: Sequence[str], components: Sequence[str], command: str
) -> dict[str, dict[str, Any]]:
    """The ``--set COMPONENT.KEY=VALUE`` items of a command that takes only component parameters, split by
    component: ``{"input_denoiser": {"sigma": 2.0}, ...}`` (one table per name in ``components``, values
    parsed as TOML). ``voxuda evaluate`` and ``voxuda segment`` share it, so both read and refuse the same
    items; ``command`` names the command in the error."""
    params: dict[str, dict[str, Any]] = {name: {} for name in components}
    for item in items:
        path, value = parse_override(item)
        if path[0] not in params or len(path) < 2:
            accepted = " or ".join(f"{name}.KEY=VALUE" for name in components)
            raise ConfigError(f"--set {item!r}: {command} accepts only {accepted}")
        params[path[0]][".".join(path[1:])] = value
    return params


def set_dotted(data: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set ``data[a][b][c] = value``; a bare component name on the way becomes a ``{"name": ...}`` table."""
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str):
            child = node[part] = {"name": child}
        elif not isinstance(child, dict):
            raise ConfigError(f"cannot set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a table")
        node = child
    node[path[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Apply dotted overrides (``["a.b=1"]`` or ``{"a.b": 1}``) to a copy of ``data``."""
    import copy

    result = copy.deepcopy(data)
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
    for key, value in items:
        path = key.split(".") if isinstance(key, str) else list(key)
        set_dotted(result, path, value)
    return result


# -- description -----------------------------------------------------------------------------------------
@attrs.frozen
class FieldDoc:
    name: str
    type: str
    default: Any
    help: str
    component: bool


def describe_fields(cls: type) -> list[FieldDoc]:
    attrs.resolve_types(cls)
    docs = []
    for f in attrs.fields(cls):
        if not f.init:
            continue
        if f.default is attrs.NOTHING:
            default: Any = "(required)"
        elif isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            default = _plain(f.default.factory())
        else:
            default = _plain(f.default)
        docs.append(
            FieldDoc(
                name=f.name,
                type=_type_name(f.type),
                default=default,
                help=str(f.metadata.get("help", "")),
                component=bool(f.metadata.get("component", False)),
            )
        )
    return docs


def _type_name(tp: Any) -> str:
    if tp is None:
        return "any"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")

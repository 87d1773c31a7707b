"""Helpers for parametrising over every registered component (built-in or plugin) in the same way."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from voxuda.registry import ComponentSpec


def unwritten_builtin_module(exc: BaseException) -> str | None:
    """The ``voxuda.*`` module whose absence caused ``exc`` (a built-in still being written), if any."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ModuleNotFoundError) and (cause.name or "").startswith("voxuda."):
            return cause.name
        cause = cause.__cause__ or cause.__context__
    return None


def skip_if_unwritten(spec: ComponentSpec, exc: BaseException) -> None:
    """Skip (only) a built-in that fails because one of voxuda's own modules does not exist yet.

    Parallel development lands modules one by one; a plugin's failure, or a missing third-party
    dependency, is never skipped.
    """
    missing = unwritten_builtin_module(exc)
    if spec.builtin and missing is not None:
        pytest.skip(f"built-in {spec.kind} {spec.name!r}: module {missing} not written yet")


def load_or_skip(spec: ComponentSpec) -> tuple[Any, Any]:
    """Import the factory and config class of a component (skip unwritten built-ins)."""
    try:
        factory = spec.load_factory()
        config_cls = spec.load_config_class()
    except Exception as exc:
        skip_if_unwritten(spec, exc)
        raise
    return factory, config_cls


def has_field(config_cls: Any, name: str) -> bool:
    if config_cls is None or not attrs.has(config_cls):
        return False
    return name in {f.name for f in attrs.fields(config_cls)}

"""Fake entry points, so plugin loading is tested without installing packages."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from voxuda import plugins


class FakeDist:
    def __init__(self, name: str, version: str = "1.0") -> None:
        self.name = name
        self.version = version


class FakeEntryPoint:
    def __init__(self, name: str, loader: Callable[[], Any], dist: str) -> None:
        self.name = name
        self._loader = loader
        self.dist = FakeDist(dist)

    def load(self) -> Any:
        return self._loader()


def make_plugin(name: str, **hooks: Callable[..., None]) -> types.SimpleNamespace:
    """A plugin object whose hook implementations register what the given functions register."""
    from voxuda import hookimpl

    namespace = types.SimpleNamespace(__name__=name)
    for hook_name, body in hooks.items():
        setattr(namespace, hook_name, hookimpl(body))
    return namespace


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeEntryPoint]]:
    points: list[FakeEntryPoint] = []
    monkeypatch.setattr(plugins, "iter_entry_points", lambda: list(points))
    monkeypatch.delenv("VOXUDA_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("VOXUDA_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    plugins.reset()
    yield points
    plugins.reset()

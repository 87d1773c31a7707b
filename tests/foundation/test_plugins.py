"""Plugin loading: isolation, collisions, qualified names, autoload switch, strict mode, API version."""

from __future__ import annotations

import pytest

from voxuda import plugins
from voxuda.errors import AmbiguousComponentError, PluginError, UnknownComponentError
from voxuda.plugins import get_registry

from .conftest import FakeEntryPoint, make_plugin


def _denoiser_plugin(module_name: str, name: str = "median"):
    def voxuda_register_denoisers(register):
        register(
            name,
            factory="tests.foundation.sample_components:Scale",
            config="tests.foundation.sample_components:ScaleConfig",
            summary=f"from {module_name}",
        )

    return make_plugin(module_name, voxuda_register_denoisers=voxuda_register_denoisers)


def _broken():
    raise ImportError("No module named 'missing_dependency'")


def test_broken_plugin_is_recorded_and_others_still_load(fake_entry_points):
    fake_entry_points.append(FakeEntryPoint("broken", _broken, dist="voxuda-broken"))
    fake_entry_points.append(FakeEntryPoint("good", lambda: _denoiser_plugin("good"), dist="voxuda-good"))
    registry = get_registry()
    assert [f.plugin for f in registry.failures] == ["broken"]
    assert "missing_dependency" in registry.failures[0].error
    assert registry.failures[0].distribution == "voxuda-broken"
    spec = registry.resolve("denoiser", "median")
    assert (spec.plugin, spec.distribution, spec.version) == ("good", "voxuda-good", "1.0")
    # the built-ins are still there
    assert registry.resolve("method", "vox_uda").builtin


def test_unknown_name_lists_failed_plugins_and_suggestions(fake_entry_points):
    fake_entry_points.append(FakeEntryPoint("broken", _broken, dist="voxuda-broken"))
    with pytest.raises(UnknownComponentError) as info:
        get_registry().resolve("denoiser", "gausian")
    message = str(info.value)
    assert "did you mean 'gaussian'" in message
    assert "broken" in message and "\n" not in message


def test_collision_between_two_distributions_names_both(fake_entry_points):
    fake_entry_points.append(FakeEntryPoint("alpha", lambda: _denoiser_plugin("alpha"), dist="voxuda-alpha"))
    fake_entry_points.append(FakeEntryPoint("beta", lambda: _denoiser_plugin("beta"), dist="voxuda-beta"))
    registry = get_registry()
    with pytest.raises(AmbiguousComponentError) as info:
        registry.resolve("denoiser", "median")
    assert "voxuda-alpha" in str(info.value) and "voxuda-beta" in str(info.value)
    # qualified names always work
    assert registry.resolve("denoiser", "alpha:median").summary == "from alpha"
    assert registry.resolve("denoiser", "beta:median").summary == "from beta"
    assert [(k, n) for k, n, _ in registry.conflicts()] == [("denoiser", "median")]


def test_qualified_builtin_name_resolves(fake_entry_points):
    assert get_registry().resolve("denoiser", "voxuda:gaussian").name == "gaussian"


def test_third_party_cannot_replace_builtin(fake_entry_points):
    fake_entry_points.append(
        FakeEntryPoint("sneaky", lambda: _denoiser_plugin("sneaky", name="gaussian"), dist="voxuda-sneaky")
    )
    registry = get_registry()
    assert registry.resolve("denoiser", "gaussian").builtin
    assert any("may not register denoiser 'gaussian'" in f.error for f in registry.failures)


def test_disabled_autoload_skips_entry_points(fake_entry_points, monkeypatch):
    fake_entry_points.append(FakeEntryPoint("good", lambda: _denoiser_plugin("good"), dist="voxuda-good"))
    monkeypatch.setenv("VOXUDA_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.reset()
    registry = get_registry()
    with pytest.raises(UnknownComponentError):
        registry.resolve("denoiser", "median")
    assert registry.resolve("method", "source_only").builtin


def test_strict_mode_makes_a_broken_plugin_fatal(fake_entry_points, monkeypatch):
    fake_entry_points.append(FakeEntryPoint("broken", _broken, dist="voxuda-broken"))
    monkeypatch.setenv("VOXUDA_STRICT_PLUGINS", "1")
    plugins.reset()
    with pytest.raises(PluginError, match="broken"):
        get_registry()


def test_strict_mode_makes_a_collision_fatal(fake_entry_points, monkeypatch):
    fake_entry_points.append(FakeEntryPoint("alpha", lambda: _denoiser_plugin("alpha"), dist="voxuda-alpha"))
    fake_entry_points.append(FakeEntryPoint("beta", lambda: _denoiser_plugin("beta"), dist="voxuda-beta"))
    monkeypatch.setenv("VOXUDA_STRICT_PLUGINS", "1")
    plugins.reset()
    with pytest.raises(PluginError, match="alpha.*beta"):
        get_registry()


def test_plugin_for_another_api_major_version_is_refused(fake_entry_points):
    plugin = _denoiser_plugin("future")
    plugin.VOXUDA_PLUGIN_API_VERSION = "2.0"
    fake_entry_points.append(FakeEntryPoint("future", lambda: plugin, dist="voxuda-future"))
    registry = get_registry()
    assert "plugin API 2.0" in registry.failures[0].error
    with pytest.raises(UnknownComponentError):
        registry.resolve("denoiser", "median")


def test_hook_that_raises_is_isolated(fake_entry_points):
    def voxuda_register_methods(register):
        raise RuntimeError("bad registration code")

    fake_entry_points.append(
        FakeEntryPoint(
            "raiser",
            lambda: make_plugin("raiser", voxuda_register_methods=voxuda_register_methods),
            dist="voxuda-raiser",
        )
    )
    registry = get_registry()
    assert "bad registration code" in registry.failures[0].error
    assert registry.resolve("method", "dann").builtin


def test_registered_plugin_component_builds(fake_entry_points):
    import voxuda

    fake_entry_points.append(FakeEntryPoint("good", lambda: _denoiser_plugin("good"), dist="voxuda-good"))
    component = voxuda.build_component("denoiser", {"name": "median", "factor": 3.0})
    assert component(2.0) == 6.0


def test_invalid_names_are_rejected(fake_entry_points):
    fake_entry_points.append(
        FakeEntryPoint("caps", lambda: _denoiser_plugin("caps", name="Median"), dist="voxuda-caps")
    )
    assert "snake_case" in get_registry().failures[0].error

"""Public API, import weight and the CLI's behaviour on good and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import voxuda
from voxuda.cli import COMMANDS, main
from voxuda.errors import ConfigError


def test_import_voxuda_does_not_import_torch_or_plugins():
    # nor do the contracts: plugins import RegisterFn at load time, and type-checking the protocols needs none
    code = (
        "import sys, voxuda, voxuda.protocols, voxuda.hookspecs; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'voxuda.plugins' not in sys.modules, 'plugins loaded'; "
        "print(voxuda.__version__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == voxuda.__version__


def test_public_api_names():
    for name in ("build_method", "build_component", "list_components", "describe", "hookimpl"):
        assert callable(getattr(voxuda, name))


def test_list_components_covers_every_kind():
    kinds = {spec.kind for spec in voxuda.list_components()}
    assert kinds == {"backbone", "noise_model", "denoiser", "method", "op", "dataset", "validator", "aligner"}
    assert {s.name for s in voxuda.list_components("aligner")} >= {"none", "detrend", "spectrum_match"}
    assert {s.name for s in voxuda.list_components("method")} >= {
        "source_only",
        "oracle",
        "dann",
        "mean_teacher",
        "vox_uda",
    }


def test_unknown_config_key_for_a_component(monkeypatch):
    from tests.foundation.conftest import FakeEntryPoint, make_plugin
    from voxuda import plugins

    def voxuda_register_denoisers(register):
        register(
            "scale",
            factory="tests.foundation.sample_components:Scale",
            config="tests.foundation.sample_components:ScaleConfig",
        )

    monkeypatch.setattr(
        plugins,
        "iter_entry_points",
        lambda: [
            FakeEntryPoint(
                "demo",
                lambda: make_plugin("demo", voxuda_register_denoisers=voxuda_register_denoisers),
                "voxuda-demo",
            )
        ],
    )
    plugins.reset()
    try:
        with pytest.raises(ConfigError, match="unknown key 'facter'; did you mean 'factor'"):
            voxuda.build_component("denoiser", "scale", facter=2.0)
        assert voxuda.build_component("denoiser", "scale", factor=4.0)(1.0) == 4.0
    finally:
        plugins.reset()


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert voxuda.__version__ in capsys.readouterr().out


def test_cli_plugins_json(capsys):
    assert main(["plugins", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    rows = {(c["kind"], c["name"]): c for c in payload["components"]}
    assert rows[("method", "vox_uda")]["distribution"] == "voxuda"
    assert rows[("method", "vox_uda")]["version"] == voxuda.__version__
    assert {"failed", "conflicts", "plugins"} <= set(payload)


def test_cli_describe_unknown_name_is_one_clear_line(capsys):
    assert main(["describe", "vox_udaa"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "did you mean 'vox_uda'" in err


def test_cli_describe_subprocess_exit_code():
    result = subprocess.run(
        [sys.executable, "-m", "voxuda", "describe", "nosuchthing"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stderr.strip().startswith("voxuda: error: no component called 'nosuchthing'")
    assert "Traceback" not in result.stderr


def test_command_table_modules_define_the_interface():
    import importlib

    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            pytest.fail(f"command {name!r} points to missing module {module_name}")
        assert callable(module.add_arguments) and callable(module.run) and help_text

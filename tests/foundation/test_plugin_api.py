"""The plugin-author surface: the plugins in this repository import voxuda only through it."""

from __future__ import annotations

import ast
from pathlib import Path

import voxuda.plugin_api as plugin_api

ROOT = Path(__file__).resolve().parents[2]
#: the modules a plugin may import (voxuda/plugin_api.py says why each)
SURFACE = {"voxuda", "voxuda.hookspecs", "voxuda.plugin_api", "voxuda.testing"}


def voxuda_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every voxuda import in ``path``, function-local ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "voxuda":
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "voxuda"]
    return found


def test_plugins_import_voxuda_only_through_the_plugin_surface() -> None:
    sources = sorted(ROOT.glob("plugins/*/src/**/*.py"))
    assert len(sources) >= 8  # the four plugin packages are there
    outside = [f"{path.relative_to(ROOT)}:{line} imports {module}"
               for path in sources for line, module in voxuda_imports(path) if module not in SURFACE]
    assert outside == []


def test_the_scan_sees_a_private_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from voxuda.methods.dann import resolve_tap\n    import voxuda.ops\n")
    assert voxuda_imports(module) == [(2, "voxuda.methods.dann"), (3, "voxuda.ops")]


def test_every_exported_name_exists() -> None:
    missing = [name for name in plugin_api.__all__ if not hasattr(plugin_api, name)]
    assert missing == [] and len(set(plugin_api.__all__)) == len(plugin_api.__all__)

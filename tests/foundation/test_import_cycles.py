"""scripts/import_cycles.py: no import circle between voxuda's modules, function-local imports included."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import import_cycles  # noqa: E402

#: circles that remain, each a set of modules; a new circle fails the test, a broken one asks for its removal
KNOWN: list[set[str]] = [{"voxuda.simulate.preset_file", "voxuda.simulate.presets"}]


def test_voxuda_has_no_import_circle_but_the_known_ones() -> None:
    cycles = [set(c) for c in import_cycles.find_cycles(ROOT / "voxuda")]
    named = {"voxuda.registry", "voxuda.plugins", "voxuda.engine.trainer", "voxuda.engine.evaluate"}
    assert not [c for c in cycles if c & named], "the circles the structure review named are back"
    assert sorted(map(sorted, cycles)) == sorted(map(sorted, KNOWN))


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def test_function_local_and_relative_imports_count_but_type_checking_ones_do_not(tmp_path: Path) -> None:
    pkg = _write(tmp_path / "pkg", {
        "__init__.py": "",
        "a.py": "def f():\n    from pkg.b import g\n",
        "b.py": "from . import c\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
        "sub/__init__.py": "",
        "sub/d.py": "from .. import b\nfrom pkg.sub import e\n",
        "sub/e.py": "import pkg.sub.d\n",
    })
    arrows = {(a.source, a.target, a.local) for a in import_cycles.arrows(pkg)}
    assert ("pkg.a", "pkg.b", True) in arrows and ("pkg.b", "pkg.c", False) in arrows
    assert not any(a[0] == "pkg.c" and a[1] == "pkg.a" for a in arrows)  # under TYPE_CHECKING
    assert import_cycles.find_cycles(pkg) == [["pkg.sub.d", "pkg.sub.e"]]
    _write(pkg, {"c.py": "def h():\n    import pkg.a\n"})  # now a run-time arrow: a -> b -> c -> a
    assert import_cycles.find_cycles(pkg) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.sub.d", "pkg.sub.e"]]


def test_the_command_fails_on_a_cycle_only_when_asked(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pkg = _write(tmp_path / "pkg", {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "import pkg.a\n"})
    assert import_cycles.main([str(pkg)]) == 0
    assert import_cycles.main([str(pkg), "--fail-on-cycle"]) == 1
    assert "circle 1: pkg.a, pkg.b" in capsys.readouterr().out
    _write(pkg, {"b.py": ""})
    assert import_cycles.main([str(pkg), "--fail-on-cycle"]) == 0

"""Docs that must stay in step with the code."""

from __future__ import annotations

import inspect
from pathlib import Path

from voxuda import hookspecs
from voxuda.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


def test_every_hook_spec_is_documented_with_its_signature():
    text = (ROOT / "docs" / "plugins.md").read_text()
    for name in hookspecs.HOOK_KINDS:
        # pluggy calls hooks by keyword, so the parameter names are the contract (their type is RegisterFn)
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        signature = f"{name}({params})"
        assert signature in text, f"docs/plugins.md does not document {signature}"
    assert 'register(name, *, factory, config=None, aliases=(), summary="", priority=0, probe=None)' in text


def test_every_cli_command_is_in_the_readme_or_docs():
    text = (ROOT / "README.md").read_text() + (ROOT / "docs" / "architecture.md").read_text()
    for name in COMMANDS:
        assert f"voxuda {name}" in text, f"command 'voxuda {name}' is undocumented"

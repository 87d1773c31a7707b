"""``voxuda train --init-from RUN``: adapt a model the user already trained (the benchmark's warm start)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_run_dict
from voxuda.cli import main
from voxuda.config import dump_toml
from voxuda.engine.checkpoint import load_checkpoint
from voxuda.engine.drift import load_initial_weights


def _config(tmp_path: Path, name: str, data: dict) -> Path:  # type: ignore[type-arg]
    path = tmp_path / f"{name}.toml"
    data["evaluation"]["split"] = ""
    path.write_text(dump_toml(data), encoding="utf-8")
    return path


@pytest.fixture
def parent(tiny_dataset: Path, tmp_path: Path) -> Path:
    config = _config(tmp_path, "parent", tiny_run_dict(tiny_dataset, "source_only", steps=3, lr=3e-2))
    out = tmp_path / "parent"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    return out


def test_mean_teacher_starts_from_the_parent_student(parent: Path, tiny_dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, "child", tiny_run_dict(tiny_dataset, "mean_teacher", steps=2))
    child = tmp_path / "child"
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--out", str(child), "--init-from", str(parent),
                 "--no-progress"]) == 0
    assert f"warm start from {parent}" in capsys.readouterr().out
    record = json.loads((child / "run.json").read_text())
    assert record["init_from"]["parent"] == str(parent / "last.pt")
    assert record["init_from"]["parent_step"] == 3 and record["init_from"]["copied"] > 0
    assert load_checkpoint(child / "last.pt")["step"] == 2
    source = load_checkpoint(parent / "last.pt")["method"]
    start = load_initial_weights(child / "init.pt")
    assert start is not None
    for key, value in source.items():  # student and teacher both start from the parent's student
        torch.testing.assert_close(start[key], value)
        torch.testing.assert_close(start["teacher." + key.removeprefix("student.")], value)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".child.")]  # no staging folder left


def test_a_parent_that_does_not_fit_leaves_no_run(parent: Path, tiny_dataset: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    other = tiny_run_dict(tiny_dataset, {"name": "source_only", "backbone": {"name": "voxresnet"}}, steps=2)
    config = _config(tmp_path, "child", other)
    child = tmp_path / "child"
    capsys.readouterr()
    code = main(["train", "--config", str(config), "--out", str(child), "--init-from", str(parent)])
    err = capsys.readouterr().err
    assert code != 0 and "no weights of" in err and len(err.strip().splitlines()) == 1, err
    assert not child.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".child.")]
    missing = str(tmp_path / "nope")
    code = main(["train", "--config", str(config), "--out", str(child), "--init-from", missing])
    err = capsys.readouterr().err
    assert code != 0 and "--init-from" in err and "nope" in err and not child.exists()

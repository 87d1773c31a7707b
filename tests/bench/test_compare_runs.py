"""scripts/compare_runs.py: whether two runs hold the same weights, how far apart, and on what numerics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from voxuda.engine.run_config import run_config_from_dict
from voxuda.engine.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from compare_runs import main  # noqa: E402


def test_same_seed_is_bit_identical_and_another_seed_is_not(run_dict, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = run_config_from_dict(run_dict(steps=2))
    for name in ("a", "b"):
        train(config, tmp_path / name)
    other = run_config_from_dict({**run_dict(steps=2), "seed": 1})
    train(other, tmp_path / "c")
    capsys.readouterr()

    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    same = capsys.readouterr().out
    assert "differ: 0" in same and "largest" not in same
    assert "threads" in same  # each run's numerics from its run.json

    assert main([str(tmp_path / "a"), str(tmp_path / "c")]) == 0
    lines = capsys.readouterr().out.splitlines()
    counts = lines[2]
    assert "bit-identical: 0" in counts  # another initialisation moves every tensor
    relative = float(lines[3].rsplit(": ", 1)[1])
    assert 0 < relative < 10


def test_a_missing_checkpoint_is_one_line_naming_it(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope"), str(tmp_path / "nope2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err and "last.pt" in err

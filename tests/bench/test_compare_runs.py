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
    assert "1 thread," in same  # each run's numerics from its run.json (the tests train on 1 thread)

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


def test_two_benchmark_folders_are_paired_run_by_run(tmp_path: Path) -> None:
    """The suite mode pairs every finished run of two folders by target, label, network and seed: Dice in
    each, B - A per row over seeds, and whether the trained weights are bit-identical."""
    import torch

    from voxuda.bench.runner import BenchmarkOptions, run_benchmark
    from voxuda.bench.suite import load_suite
    from voxuda.engine.checkpoint import FORMAT, VERSION, save_atomic

    from .fakes import FakeEngine
    from .test_suite_and_resume import SUITE

    suite_file = tmp_path / "fake.toml"
    suite_file.write_text(SUITE)
    folders = []
    for name, shift in (("a", 0.0), ("b", 0.02)):
        engine = FakeEngine()
        default = engine.default_dice
        engine.dice = lambda c, r, ck, d, n, _s=shift, _f=default: _f(c, r, ck, d, n) + (
            _s if c["method"]["name"] == "mean_teacher" else 0.0)
        out = tmp_path / name / "out"
        run_benchmark(load_suite(str(suite_file)), BenchmarkOptions(
            out_dir=out, data_root=tmp_path / "data", plots=False, progress=False, targets=("t1",)), engine)
        for last in out.glob("runs/*/*/seed*/last.pt"):  # the fake's marker files become real checkpoints
            moved = shift if last.parts[-3] == "adapted" else 0.0
            save_atomic({"format": FORMAT, "version": VERSION, "step": 1,
                         "method": {"w": torch.ones(3) + moved,  # nested states are compared too
                                    "noise": {"sigma2": torch.tensor(2.0 + moved), "name": "skew"}}}, last)
        folders.append(out)
    from compare_runs import compare_suites

    text = compare_suites(folders[0], folders[1], [], "last.pt")
    assert ("| `t1/source_only/seed1` | student (reported) | 0.5100 | 0.5100 | +0.0000 | bit-identical |"
            in text)
    assert "| `t1/adapted/seed0` | teacher (reported) | 0.6000 | 0.6200 | +0.0200 | differ (relative" in text
    assert all(line.count("|") == 7 for line in text.splitlines() if line.startswith("| `t1/"))
    assert "| `t1` | `adapted` (teacher, reported) | 2 | +0.020" in text
    only = compare_suites(folders[0], folders[1], ["oracle"], "last.pt")
    assert "adapted" not in only and "`t1/oracle/seed0`" in only

"""Predictors that move: the teacher-momentum rule (half-life at most a fifth of the run), its config-check
warning and run.json record, ``ema_half_life_fraction``, and weight drift from init.pt after a warm start."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import make_blobs
from voxuda.api import build_method
from voxuda.bench.executor import warm_start
from voxuda.engine import run_config as engine_config
from voxuda.engine.checkpoint import load_checkpoint
from voxuda.engine.drift import load_initial_weights, network_drift, relative_drift
from voxuda.engine.run_config import run_config_from_dict
from voxuda.engine.trainer import train
from voxuda.methods.base import SourceBatch, TargetBatch, TrainContext
from voxuda.methods.ema import (
    MAX_HALF_LIFE_FRACTION,
    effective_momentum,
    half_life,
    momentum_for_half_life,
    teacher_schedule,
)

TINY = {"name": "unet3d", "widths": [4, 8]}


def test_half_life_and_its_inverse() -> None:
    assert half_life(0.99) == pytest.approx(68.97, abs=0.01)
    assert half_life(0.999) == pytest.approx(692.8, abs=0.1)
    assert half_life(1.0) == math.inf and half_life(0.0) == 0.0
    for momentum in (0.5, 0.9, 0.99, 0.999):
        assert momentum_for_half_life(half_life(momentum)) == pytest.approx(momentum)
    # after one half-life a teacher holds half of its start
    assert 0.99 ** half_life(0.99) == pytest.approx(0.5)


def test_teacher_rule_and_its_warning() -> None:
    assert MAX_HALF_LIFE_FRACTION == 0.2
    paper = teacher_schedule(0.999, 100)  # Vox-UDA's [R-own] default over the quick suite's 100 steps
    assert not paper.holds and paper.max_half_life == 20
    message = paper.warning()
    assert message is not None and "\n" not in message
    for part in ("method.ema_momentum = 0.999", "693 steps", "trainer.steps = 100", "ema_momentum <= 0.9659",
                 "ema_half_life_fraction = 0.2"):
        assert part in message, part
    suggested = paper.suggested_momentum
    assert half_life(suggested) <= 20 < half_life(suggested + 1e-4)
    assert teacher_schedule(0.96, 100).holds and teacher_schedule(0.96, 100).warning() is None
    scaled = teacher_schedule(0.999, 100, half_life_fraction=0.2)
    assert scaled.holds and scaled.momentum == pytest.approx(0.5 ** (1 / 20))
    assert effective_momentum(0.99, 0.0, 1000) == 0.99
    assert teacher_schedule(0.99, 100).to_dict() == {
        "momentum": 0.99, "half_life": pytest.approx(68.97, abs=0.01), "steps": 100, "max_half_life": 20.0,
        "holds": False}


def test_config_check_warns_once_and_only_for_slow_teachers(run_dict, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(engine_config, "_WARNED", set())
    slow = run_dict({"name": "mean_teacher", "ema_momentum": 0.99}, steps=100)
    run_config_from_dict(slow)
    run_config_from_dict(slow)  # the benchmark checks the same config once per session: one line in all
    lines = [line for line in capsys.readouterr().err.splitlines() if "ema_momentum" in line]
    assert len(lines) == 1 and lines[0].startswith("voxuda: warning: method.ema_momentum = 0.99")
    for fine in ({"name": "mean_teacher", "ema_momentum": 0.9},
                 {"name": "mean_teacher", "ema_half_life_fraction": 0.2},
                 "source_only", "dann"):
        run_config_from_dict(run_dict(fine, steps=100))
    assert "warning" not in capsys.readouterr().err


def test_half_life_fraction_sets_the_momentum_from_the_run_length() -> None:
    method = build_method({"name": "mean_teacher", "backbone": TINY, "ema_half_life_fraction": 0.2})
    method.on_train_start(TrainContext(total_steps=50, device=torch.device("cpu"),
                                       sample_target=lambda n: None, generator=torch.Generator()))
    assert method.self_training.ema_momentum == pytest.approx(0.5 ** (1 / 10))
    before = {k: v.clone() for k, v in method.teacher.named_parameters()}
    with torch.no_grad():
        for p in method.student.parameters():
            p.add_(1.0)
    method.on_after_optimizer_step(0)
    m = method.self_training.ema_momentum
    for name, s_param in method.student.named_parameters():
        expected = m * before[name] + (1 - m) * s_param
        torch.testing.assert_close(dict(method.teacher.named_parameters())[name], expected)


def test_relative_drift_by_hand() -> None:
    start = {"a.w": torch.tensor([3.0, 4.0]), "a.b": torch.tensor([0.0])}
    now = {"a.w": torch.tensor([3.0, 4.0]) + torch.tensor([0.6, 0.8]), "a.b": torch.tensor([0.0])}
    assert relative_drift(now, start) == pytest.approx(0.2)
    assert relative_drift({"x": torch.ones(2)}, start) is None  # nothing in common


def _source_only_parent(steps: int = 20) -> torch.nn.Module:
    volumes, labels, _ = make_blobs(8, seed=1)
    torch.manual_seed(0)
    parent = build_method({"name": "source_only", "backbone": TINY})
    optimiser = torch.optim.Adam(parent.parameters(), lr=3e-3)
    for step in range(steps):
        i = torch.arange(2 * step, 2 * step + 2) % 8
        loss, _ = parent.seg_loss(parent.student(volumes[i])[0], labels[i])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return parent


@pytest.mark.parametrize(("momentum", "low", "high"), [(0.99, 0.05, 1.0), (0.999, 0.0, 0.03)])
def test_suite_teacher_moves_from_its_warm_start(momentum: float, low: float, high: float) -> None:
    """The quick suite's mean teacher (0.99, 100 adaptation steps at lr 2e-3) on tiny data: measured teacher
    drift 13 % (student 30 %), so it must exceed 5 %; Vox-UDA's 0.999 teacher keeps 0.999^100 = 90 % of its
    start and moves 1.8 % (the review measured 1.7 % on the quick suite), below 3 %."""
    parent = _source_only_parent()
    source, labels, _ = make_blobs(8, seed=1)
    target, _, _ = make_blobs(8, seed=2, contrast=0.7, noise=0.6)
    method = build_method({"name": "mean_teacher", "backbone": TINY, "ema_momentum": momentum,
                           "confidence_threshold": 0.9})
    method.student.load_state_dict(parent.student.state_dict())
    method.teacher.load_state_dict(parent.student.state_dict())
    start = {k: v.clone() for k, v in method.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    method.on_train_start(TrainContext(total_steps=100, device=torch.device("cpu"),
                                       sample_target=lambda n: None, generator=generator))
    optimiser = torch.optim.Adam(list(method.trainable_parameters()), lr=2e-3)
    for step in range(100):
        i = torch.arange(2 * step, 2 * step + 2) % 8
        out = method.training_step(SourceBatch(source[i], labels[i]), TargetBatch(target[i]), step)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        method.on_after_optimizer_step(step)
    drift = network_drift(method, method.networks(), start)
    assert low < drift["teacher"] < high, drift
    assert drift["teacher"] < drift["student"]


def test_warm_started_run_records_drift_of_teacher_and_student(run_dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The benchmark's warm start: init.pt holds the parent's weights, run.json the drift of both networks."""
    parent = train(run_config_from_dict(run_dict("source_only", steps=6)), tmp_path / "parent")
    child_config = run_config_from_dict(run_dict({"name": "mean_teacher", "ema_momentum": 0.9}, steps=10))
    child = tmp_path / "child"
    train(child_config, child, stop_after=0)
    fresh = load_initial_weights(child / "init.pt")
    assert fresh is not None
    warm_start(child / "last.pt", parent.last_checkpoint, child / "init.json")
    initial = load_initial_weights(child / "init.pt")
    parent_weights = load_checkpoint(parent.last_checkpoint)["method"]
    assert initial is not None
    for key, value in parent_weights.items():  # student and teacher both start from the parent's student
        assert torch.equal(initial[key], value)
        assert torch.equal(initial["teacher." + key[len("student."):]], value)
    assert not torch.equal(fresh["student.head.weight"], initial["student.head.weight"])
    result = train(child_config, child, resume=True)
    assert result.completed
    record = json.loads((child / "run.json").read_text())
    drift = record["drift"]
    assert set(drift) == {"student", "teacher"} and record["reported_network"] == "teacher"
    assert 0 < drift["teacher"] < drift["student"], drift
    schedule = record["teacher_schedule"]
    assert schedule["momentum"] == 0.9 and schedule["steps"] == 10 and not schedule["holds"]  # 6.6 > 2 steps
    assert record["warnings"] and "method.ema_momentum = 0.9" in record["warnings"][0]
    final = load_checkpoint(child / "last.pt")["method"]
    expected = relative_drift({k: v for k, v in final.items() if k.startswith("student.")}, initial)
    assert drift["student"] == pytest.approx(expected)


def test_init_is_written_fresh_and_kept_on_resume(run_dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = run_config_from_dict(run_dict("dann", steps=4))
    run = tmp_path / "run"
    train(config, run, stop_after=2)
    first = load_initial_weights(run / "init.pt")
    stamp = (run / "init.pt").stat().st_mtime_ns
    train(config, run, resume=True)
    assert (run / "init.pt").stat().st_mtime_ns == stamp
    again = load_initial_weights(run / "init.pt")
    assert first is not None and again is not None
    assert all(torch.equal(first[k], again[k]) for k in first)
    record = json.loads((run / "run.json").read_text())
    assert record["reported_network"] == "student" and record["drift"]["student"] > 0
    assert record["teacher_schedule"] is None and record["warnings"] == []

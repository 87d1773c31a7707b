"""evaluation.select_start: the weights a run starts from are a checkpoint candidate too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from voxuda.engine import trainer as trainer_module
from voxuda.engine.checkpoint import load_checkpoint
from voxuda.engine.run_config import run_config_from_dict
from voxuda.testing import tiny_run_data


def config(select_start: bool, steps: int = 4) -> Any:
    return run_config_from_dict({
        "seed": 0,
        "method": {"name": "source_only", "backbone": {"name": "unet3d", "widths": [4, 8]}},
        "data": {"root": "unused", "box": 8},
        "trainer": {"steps": steps, "batch_size": 2, "eval_every": 2, "progress": False, "num_threads": 1},
        "evaluation": {"selection": "source_val", "split": "", "select_start": select_start},
    })


@pytest.fixture
def start_scores_best(monkeypatch: pytest.MonkeyPatch) -> None:
    """A validator whose score falls with training: the starting weights are the best by its measure."""
    monkeypatch.setattr(trainer_module._Trainer, "validate", lambda self: 1.0 / (1 + self.step))


@pytest.mark.usefixtures("start_scores_best")
def test_a_run_whose_training_lowers_the_score_keeps_its_start(tmp_path: Path) -> None:
    result = trainer_module.train(config(True), tmp_path / "on", data=tiny_run_data())
    assert result.best_step == 0
    best = load_checkpoint(tmp_path / "on" / "best.pt")
    start = load_checkpoint(tmp_path / "on" / "init.pt")
    assert best["step"] == 0 and all(torch.equal(best["method"][k], v) for k, v in start["method"].items())
    events = [json.loads(line) for line in (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e.get("event") == "validation"] == [0, 2, 4]


@pytest.mark.usefixtures("start_scores_best")
def test_off_by_default_and_never_in_a_zero_step_staging_session(tmp_path: Path) -> None:
    assert trainer_module.train(config(False), tmp_path / "off", data=tiny_run_data()).best_step == 2
    staged = trainer_module.train(config(True), tmp_path / "staged", data=tiny_run_data(), stop_after=0)
    assert staged.best_step is None and not (tmp_path / "staged" / "best.pt").exists()

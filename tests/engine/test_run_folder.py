"""The run folder: config.toml, run.json, metrics.jsonl, checkpoints, selection flags, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from voxuda.config import load_toml
from voxuda.engine.checkpoint import load_checkpoint
from voxuda.engine.evaluate import evaluate_run
from voxuda.engine.pipeline import train_and_evaluate
from voxuda.engine.run_config import run_config_from_dict
from voxuda.engine.trainer import train


def test_run_folder_layout_and_provenance(run_dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = run_config_from_dict(run_dict("mean_teacher", steps=4, eval_every=2))
    config.evaluation.selection = "source_val"
    out = tmp_path / "run"
    result = train_and_evaluate(config, out)
    names = {p.name for p in out.iterdir()}
    assert {"config.toml", "run.json", "metrics.jsonl", "last.pt", "best.pt", "eval_test_best.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    # config.toml is the resolved config and builds the same run again
    resolved = load_toml(out / "config.toml")
    assert resolved["method"]["ema_momentum"] == 0.99 and resolved["method"]["backbone"]["norm"] == "group"
    assert run_config_from_dict(resolved).method.name == "mean_teacher"
    record = json.loads((out / "run.json").read_text())
    assert set(record["versions"]) >= {"torch", "numpy", "voxuda", "python"}
    assert record["selection"] == {"criterion": "source_val", "label_leak": False}
    assert record["components"]["backbone"]["plugin"] == "voxuda"
    assert record["components"]["method"]["factory"] == "voxuda.methods.mean_teacher:MeanTeacher"
    assert record["start_time"] and record["end_time"] and record["completed"] is True
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines if "event" not in x]
    assert steps == [1, 2, 3, 4]
    assert all("pseudo_keep_fraction" in x for x in lines if "event" not in x)
    validations = [x for x in lines if x.get("event") == "validation"]
    assert [v["step"] for v in validations] == [2, 4]
    best = load_checkpoint(out / "best.pt")
    assert best["step"] == result.best_step and best["selection"] == "source_val"
    assert isinstance(best["rng"]["generator"], torch.Tensor)
    evaluation = json.loads((out / "eval_test_best.json").read_text())
    assert evaluation["checkpoint"]["file"] == "best.pt"
    assert set(evaluation["per_macromolecule"]) == {"ball", "rod"}
    assert 0.0 <= evaluation["overall"]["dice_fg"] <= 1.0


def test_oracle_and_label_leak_are_flagged(run_dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = run_config_from_dict(run_dict("oracle", steps=2))
    config.evaluation.selection = "target_oracle"
    out = tmp_path / "oracle"
    result = train_and_evaluate(config, out)
    record = json.loads((out / "run.json").read_text())
    assert record["uses_target_labels"] is True
    assert "upper bound" in record["flags"]
    assert record["selection"]["label_leak"] is True
    assert result.evaluation is not None
    assert "upper bound" in result.evaluation["flags"]
    assert result.evaluation["selection"]["label_leak"] is True
    inverted = evaluate_run(out, split="val", checkpoint="last", invert=True)
    assert (out / "eval_val_last_inverted.json").is_file()
    assert inverted["inverted"] is True and "upper bound" in inverted["flags"]


def test_non_oracle_methods_never_see_target_labels(run_dict, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from voxuda.methods.source_only import SourceOnly

    seen = []
    original = SourceOnly.training_step

    def spy(self, source, target, step):  # type: ignore[no-untyped-def]
        seen.append(target.label)
        return original(self, source, target, step)

    monkeypatch.setattr(SourceOnly, "training_step", spy)
    train(run_config_from_dict(run_dict(steps=2)), tmp_path / "r")
    assert seen == [None, None]


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_schedules_and_optimizers_run(run_dict, tmp_path: Path, schedule: str) -> None:  # type: ignore[no-untyped-def]
    config = run_config_from_dict(run_dict(steps=3, schedule=schedule, warmup=1, optimizer="adamw", amp=True))
    result = train(config, tmp_path / schedule)
    assert result.completed and all(v == v for v in result.final_losses.values())


def test_train_only_trains_and_the_pipeline_evaluates_a_complete_run(run_dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = run_config_from_dict(run_dict(steps=2))
    trained = train(config, tmp_path / "plain")
    assert trained.completed and trained.evaluation is None
    assert not list((tmp_path / "plain").glob("eval_*.json"))
    stopped = train_and_evaluate(config, tmp_path / "sliced", stop_after=1)  # an incomplete session
    assert not stopped.completed and stopped.evaluation is None
    assert not list((tmp_path / "sliced").glob("eval_*.json"))
    finished = train_and_evaluate(config, tmp_path / "sliced", resume=True)
    assert finished.completed and finished.evaluation is not None
    assert finished.evaluation == json.loads((tmp_path / "sliced" / "eval_test_best.json").read_text())

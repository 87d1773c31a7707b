"""A test-time input denoiser changes the predictions, and the evaluation records which one was used."""

from __future__ import annotations

import json
from pathlib import Path

from voxuda.cli import main
from voxuda.config import dump_toml


def test_input_denoiser_changes_predictions_and_is_recorded(run_dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "run.toml"
    method = {"name": "source_only", "backbone": {"name": "unet3d", "widths": [8, 16]}}
    config.write_text(dump_toml(run_dict(method, steps=150)), encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    assert main(["evaluate", str(out), "--split", "val", "--checkpoint", "last"]) == 0
    assert main(["evaluate", str(out), "--split", "val", "--checkpoint", "last",
                 "--input-denoiser", "gaussian", "--set", "input_denoiser.sigma=2"]) == 0
    raw_files = [p for p in out.glob("eval_val_last*.json") if "gaussian" not in p.name]
    smoothed_files = list(out.glob("eval_val_last*gaussian*.json"))
    assert len(raw_files) == 1 and len(smoothed_files) == 1
    raw = json.loads(raw_files[0].read_text())
    smoothed = json.loads(smoothed_files[0].read_text())
    recorded = json.dumps(smoothed.get("input_denoiser"))
    assert "gaussian" in recorded and "2" in recorded
    assert "gaussian" not in json.dumps(raw.get("input_denoiser"))
    # a trained model that finds the blobs; a sigma-2 blur of its input must move its predictions
    assert raw["overall"]["dice_fg"] > 0.3
    assert raw["overall"] != smoothed["overall"]

"""voxuda-fixmatch methods train through voxuda's own engine (the trainer, checkpoints and
evaluation of the built-ins) on tiny in-memory volumes, and their provenance names this distribution."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from voxuda.testing import train_tiny  # noqa: E402


def test_trains_through_the_engine(tmp_path):
    result, record = train_tiny({"name": "fixmatch", "confidence_threshold": 0.5}, tmp_path)
    assert result.completed and result.best_checkpoint is not None
    provenance = record["components"]["method"]
    assert (provenance["plugin"], provenance["distribution"], provenance["version"]) == (
        "fixmatch", "voxuda-fixmatch", "0.1.0"
    )
    assert 0.0 <= result.evaluation["overall"]["dice_mean"] <= 1.0
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(row.get("pseudo_keep_fraction", 0) > 0 for row in logged)

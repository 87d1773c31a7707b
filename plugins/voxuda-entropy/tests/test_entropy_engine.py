"""voxuda-entropy methods train through voxuda's own engine (the trainer, checkpoints and
evaluation of the built-ins) on tiny in-memory volumes, and their provenance names this distribution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from voxuda.engine.config import run_config_from_dict  # noqa: E402
from voxuda.engine.data import DomainSplit, RunData  # noqa: E402
from voxuda.engine.trainer import train  # noqa: E402


def _split(n: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> DomainSplit:
    g = torch.Generator().manual_seed(seed)
    volume = torch.randn(n, 1, 8, 8, 8, generator=g)
    label = (volume[:, 0] > 0.5).long()
    meta = [{"id": f"{seed}-{i}", "class": "blob"} for i in range(n)]
    return DomainSplit(scale * volume + shift, label, meta)


def run_tiny(method: dict, tmp_path: Path, steps: int = 3):  # type: ignore[no-untyped-def]
    """Train ``method`` for a few steps with source_val selection, then evaluate on the target split."""
    data = RunData(source_train=_split(4, 0), target_train=_split(4, 1, 0.5, 1.5),
                   source_val=_split(2, 2), target_val=_split(2, 3, 0.5, 1.5))
    config = run_config_from_dict({
        "seed": 0,
        "method": {"backbone": {"name": "unet3d", "widths": [4, 8]}, **method},
        "data": {"root": str(tmp_path / "no_dataset"), "box": 8},
        "trainer": {"steps": steps, "batch_size": 2, "progress": False, "num_threads": 1},
        "evaluation": {"batch_size": 2, "selection": "source_val"},
    })
    out = tmp_path / "run"
    result = train(config, out, data=data)
    return result, json.loads((out / "run.json").read_text())


@pytest.mark.parametrize("name", ["entropy_min", "advent"])
def test_trains_through_the_engine(name, tmp_path):
    result, record = run_tiny({"name": name}, tmp_path)
    assert result.completed and result.best_checkpoint is not None
    provenance = record["components"]["method"]
    assert (provenance["plugin"], provenance["distribution"], provenance["version"]) == (
        "entropy", "voxuda-entropy", "0.1.0"
    )
    assert 0.0 <= result.evaluation["overall"]["dice_mean"] <= 1.0
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("entropy" in row for row in logged)

"""A preset dataset made on first use depends on ``data.preset_seed``, never on the run's seed."""

from __future__ import annotations

import json

from voxuda.engine.data import ensure_dataset
from voxuda.engine.run_config import run_config_from_dict


def test_preset_dataset_uses_its_own_seed(tmp_path):
    root = tmp_path / "tiny"
    config = run_config_from_dict({
        "seed": 5,
        "data": {"root": str(root), "preset": "tiny", "preset_seed": 3, "target_domain": "dense_cell"},
        "method": {"name": "source_only"},
    })
    assert ensure_dataset(config.data) == root
    assert json.loads((root / "benchmark.json").read_text())["seed"] == 3

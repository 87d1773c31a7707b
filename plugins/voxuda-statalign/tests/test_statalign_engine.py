"""voxuda-statalign methods train through voxuda's own engine (the trainer, checkpoints and
evaluation of the built-ins) on tiny in-memory volumes, and their provenance names this distribution."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from voxuda.engine.data import RunData  # noqa: E402
from voxuda.engine.run_config import run_config_from_dict  # noqa: E402
from voxuda.engine.trainer import train  # noqa: E402
from voxuda.testing import tiny_split as _split  # noqa: E402
from voxuda.testing import train_tiny  # noqa: E402


def test_coral_trains_through_the_engine(tmp_path):
    result, record = train_tiny({"name": "coral"}, tmp_path)
    assert result.completed
    provenance = record["components"]["method"]
    assert (provenance["plugin"], provenance["distribution"], provenance["version"]) == (
        "statalign", "voxuda-statalign", "0.1.0"
    )
    assert 0.0 <= result.evaluation["overall"]["dice_mean"] <= 1.0


def test_adabn_checkpoints_carry_target_statistics_through_the_engine(tmp_path):
    """The trainer alone triggers AdaBN: both checkpoints hold target statistics for their weights, and the
    run's resolved config rebuilds a BatchNorm backbone (a suite-style backbone table without a norm)."""
    from voxuda.engine.checkpoint import load_checkpoint

    result, record = train_tiny({"name": "adabn"}, tmp_path)
    assert result.completed
    assert record["components"]["method"]["distribution"] == "voxuda-statalign"
    assert 'norm = "batch"' in (tmp_path / "run" / "config.toml").read_text()
    for checkpoint in (result.last_checkpoint, result.best_checkpoint):
        state = load_checkpoint(checkpoint)["method"]
        assert bool(state["target_stats.valid"])
        # target volumes are shifted by +0.5 and scaled by 1.5: their first-layer statistics differ
        assert not torch.allclose(state["target_stats.var_0"], state["student.encoders.0.1.running_var"])
    assert 0.0 <= result.evaluation["overall"]["dice_mean"] <= 1.0


def test_adabn_resumed_run_has_the_statistics_of_an_uninterrupted_run(tmp_path):
    """The statistics set is drawn in on_train_start, which the trainer calls with a freshly seeded
    generator before restoring a checkpoint, so an interrupted run re-draws the same volumes."""
    from voxuda.engine.checkpoint import load_checkpoint

    data = RunData(source_train=_split(4, 0), target_train=_split(6, 1, 0.5, 1.5))
    config = run_config_from_dict({
        "seed": 0,
        "method": {"name": "adabn", "backbone": {"name": "unet3d", "widths": [4, 8]}, "stat_volumes": 4},
        "data": {"root": str(tmp_path / "no_dataset"), "box": 8},
        "trainer": {"steps": 4, "batch_size": 2, "progress": False, "num_threads": 1},
        "evaluation": {"split": ""},
    })
    full = train(config, tmp_path / "full", data=data)
    train(config, tmp_path / "parts", data=data, stop_after=2)
    resumed = train(config, tmp_path / "parts", resume=True, data=data)
    a = load_checkpoint(full.last_checkpoint)["method"]
    b = load_checkpoint(resumed.last_checkpoint)["method"]
    assert bool(a["target_stats.valid"]) and bool(b["target_stats.valid"])
    for key in (k for k in a if k.startswith("target_stats.")):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)

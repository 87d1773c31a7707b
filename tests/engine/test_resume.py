"""A run interrupted and resumed from last.pt ends with the same parameters as an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from voxuda.engine.checkpoint import load_checkpoint
from voxuda.engine.metrics_log import read_metrics
from voxuda.engine.run_config import run_config_from_dict
from voxuda.engine.trainer import train


@pytest.mark.parametrize("method", ["mean_teacher", "dann"])
def test_resume_matches_uninterrupted(run_dict, tmp_path: Path, method: str) -> None:  # type: ignore[no-untyped-def]
    config = run_config_from_dict(run_dict(method, steps=6, sampling="epoch", schedule="cosine",
                                           checkpoint_every=2, grad_clip=1.0))
    full = train(config, tmp_path / "full")
    partial = train(config, tmp_path / "parts", stop_after=3)
    assert partial.step == 3 and not partial.completed
    resumed = train(config, tmp_path / "parts", resume=True)
    assert resumed.completed and resumed.step == 6
    a = load_checkpoint(full.last_checkpoint)["method"]
    b = load_checkpoint(resumed.last_checkpoint)["method"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    losses_full = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    losses_parts = [r["loss"] for r in read_metrics(tmp_path / "parts" / "metrics.jsonl")]
    assert losses_full == pytest.approx(losses_parts, abs=1e-6)


def test_refuses_to_overwrite_or_resume_nothing(run_dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from voxuda.errors import ConfigError

    config = run_config_from_dict(run_dict(steps=1))
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(config, tmp_path / "run", resume=True)
    train(config, tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(config, tmp_path / "run")


def test_resume_keeps_the_discriminator_group_bit_identical(run_dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The discriminator's own optimiser group (10x the rate), its warm-up and the schedule survive a resume:
    the resumed run ends with bit-identical weights, and both groups keep their 1 : 10 rates."""
    method = {"name": "dann", "discriminator_lr_scale": 10.0, "discriminator_warmup_steps": 2}
    config = run_config_from_dict(run_dict(method, steps=6, schedule="cosine", warmup=2, checkpoint_every=2))
    full = train(config, tmp_path / "full")
    train(config, tmp_path / "parts", stop_after=3)
    resumed = train(config, tmp_path / "parts", resume=True)
    a = load_checkpoint(full.last_checkpoint)
    b = load_checkpoint(resumed.last_checkpoint)
    for key in a["method"]:
        assert torch.equal(a["method"][key], b["method"][key]), key
    groups = b["optimizer"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 10.0]
    assert [g["initial_lr"] for g in groups] == pytest.approx([3e-3, 3e-2])
    assert groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"])

"""Training on a GPU and using the run on a CPU machine (skipped where CUDA is missing).

The suite as a whole runs on a GPU machine with ``device = "auto"`` resolving to CUDA; these tests name the
device explicitly and cross it, which is what a user who trains on a cluster and segments on a laptop does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from voxuda.cli import main
from voxuda.config import dump_toml

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

#: vox_uda weights one tap per level of the tiny two-level U-Net (3 taps)
METHODS = {"source_only": {}, "mean_teacher": {}, "dann": {},
           "vox_uda": {"tap_weights": [0.3, 0.3, 0.4]}}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_trained_on_cuda_evaluates_on_cpu(name: str, run_dict, tmp_path: Path,  # type: ignore[no-untyped-def]
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = run_dict({"name": name, **METHODS[name]}, steps=3, device="cuda")
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(config), encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 0
    # the checkpoint holds CPU tensors or is mapped to the CPU on load: evaluating on a CPU works
    assert main(["evaluate", str(out), "--split", "val", "--checkpoint", "last", "--device", "cpu"]) == 0
    result = json.loads((out / "eval_val_last.json").read_text())
    assert 0.0 <= result["overall"]["dice_fg"] <= 1.0
    capsys.readouterr()



def test_resume_on_cuda_continues_the_run(run_dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Resuming maps the checkpoint onto the GPU; its RNG states must still be restored (CPU byte tensors)."""
    from voxuda.engine.run_config import run_config_from_dict
    from voxuda.engine.trainer import train

    config = run_config_from_dict(run_dict("mean_teacher", steps=4, device="cuda", checkpoint_every=2))
    stopped = train(config, tmp_path / "run", stop_after=2)
    assert not stopped.completed and stopped.step == 2
    resumed = train(config, tmp_path / "run", resume=True)
    assert resumed.completed and resumed.step == 4

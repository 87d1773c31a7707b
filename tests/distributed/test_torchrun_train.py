"""``torchrun --nproc-per-node 2 -m voxuda train`` (gloo on loopback) ends with the model of a 1-process run
with the same global batch, and only rank 0 writes the run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from tests.distributed.runs import step_records, subprocess_env, write_config
from voxuda.engine.distributed import free_port


def test_torchrun_two_processes_match_one_process(tiny_dataset: Path, tmp_path: Path) -> None:
    from voxuda.engine.checkpoint import load_checkpoint
    from voxuda.engine.run_config import load_run_config
    from voxuda.engine.trainer import train

    steps = 4
    config = write_config(tmp_path, tiny_dataset, {"name": "mean_teacher", "augment": False,  # type: ignore[arg-type]
                                                   "confidence_threshold": 0.0, "dice_weight": 0.0},
                          steps=steps, batch_size=4, checkpoint_every=2, device="cpu")  # gloo, asserted
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
               "-m", "voxuda", "train", "--config", str(config), "--out", str(out)]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert step_records(out / "metrics.jsonl") == list(range(1, steps + 1))  # one writer: no doubled lines
    record = json.loads((out / "run.json").read_text())
    assert record["distributed"] == {"world_size": 2, "backend": "gloo"}

    single = train(load_run_config(config), tmp_path / "single")
    a = load_checkpoint(single.last_checkpoint)["method"]
    b = load_checkpoint(out / "last.pt")["method"]
    assert any(k.startswith("teacher") for k in a)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5, msg=key)

"""A training process killed with SIGKILL resumes with --resume: steps and metrics continue with no gap or
duplicate, nothing in the run folder is corrupt, and the result equals an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.distributed.runs import (
    metric_lines,
    step_records,
    subprocess_env,
    train_command,
    write_config,
)


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return
        if process.poll() is not None:
            raise AssertionError(f"training ended (rc {process.returncode}) before it could be killed")
        time.sleep(0.01)
    process.kill()
    raise AssertionError("training never reached the point to kill it")


def _logged_steps(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if '"event"' not in line)
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize(
    "checkpoint_every",
    [5, 0],
    ids=["after-checkpoints", "before-any-checkpoint"],
)
def test_sigkill_then_resume_continues_without_gaps_or_duplicates(
    tiny_dataset: Path, tmp_path: Path, checkpoint_every: int
) -> None:
    from voxuda.engine.checkpoint import load_checkpoint
    from voxuda.engine.run_config import load_run_config
    from voxuda.engine.trainer import train

    steps = 60
    config = write_config(tmp_path, tiny_dataset, "mean_teacher", steps=steps, sampling="epoch",
                          checkpoint_every=checkpoint_every)
    out = tmp_path / "run"
    env = subprocess_env()
    process = subprocess.Popen(train_command(config, out), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    metrics = out / "metrics.jsonl"
    if checkpoint_every:
        last = out / "last.pt"
        _kill_when(process, lambda: last.is_file() and _logged_steps(metrics) > checkpoint_every + 3)
        killed_at = load_checkpoint(out / "last.pt")["step"]  # the checkpoint on disk is complete and loads
        assert killed_at % checkpoint_every == 0 and 0 < killed_at < steps
    else:
        _kill_when(process, lambda: _logged_steps(metrics) >= 3)
        assert not (out / "last.pt").exists()
        killed_at = 0
    logged_before = _logged_steps(metrics)
    assert logged_before < steps, "the run finished before the kill; make it longer"

    resumed = subprocess.run(train_command(config, out, "--resume"), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert step_records(metrics) == list(range(1, steps + 1))  # no gap, no duplicate, in order
    events = [r for r in metric_lines(metrics) if r.get("event") == "resume"]
    assert [e["step"] for e in events] == ([killed_at] if killed_at else [])
    assert load_checkpoint(out / "last.pt")["step"] == steps
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

    reference = train(load_run_config(config), tmp_path / "uninterrupted")
    a = load_checkpoint(reference.last_checkpoint)["method"]
    b = load_checkpoint(out / "last.pt")["method"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    expected = [r["loss"] for r in metric_lines(reference.out_dir / "metrics.jsonl") if "event" not in r]
    assert [r["loss"] for r in metric_lines(metrics) if "event" not in r] == pytest.approx(expected, abs=1e-6)

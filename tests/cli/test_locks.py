"""Two voxuda processes on one output folder: the second stops with one line naming the first's PID, the
first finishes a folder identical to a run alone; a killed holder's lock is taken over; file modes follow
the umask. Real processes (``python -m voxuda``), so the lock is tested as users meet it.

The race is made deterministic with SIGSTOP: the first process is frozen as soon as it holds the lock, the
second runs to its end, then the first is resumed (or killed, for the stale-lock case).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cli.presets import SMALL_SHIFT_PRESET
from voxuda.cli import main
from voxuda.config import dump_toml
from voxuda.locks import lock_path_for, output_lock, read_holder

REPO = Path(__file__).resolve().parents[2]


def voxuda(*args: str, umask: int | None = None) -> subprocess.Popen[str]:
    """``python -m voxuda ARGS`` from the repository root (this checkout's package), one thread."""
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    env.pop("VOXUDA_TRACEBACK", None)
    preexec = (lambda: os.umask(umask)) if umask is not None else None  # noqa: E731 - the child's umask
    return subprocess.Popen([sys.executable, "-m", "voxuda", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec)


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def freeze_when_locked(proc: subprocess.Popen[str], target: Path, timeout: float = 120) -> None:
    """Wait until ``proc`` holds ``target``'s lock (its PID is in the lock file), then SIGSTOP it."""
    lock = lock_path_for(target)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_holder(lock).pid == proc.pid:
            proc.send_signal(signal.SIGSTOP)
            return
        if proc.poll() is not None:
            raise AssertionError(f"the first process ended before locking: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the first process never took the lock")


def assert_lock_line(code: int, err: str, holder: int, target: Path) -> None:
    lines = [line for line in err.strip().splitlines() if not line.startswith("voxuda: warning:")]
    assert code == 1, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"PID {holder}" in lines[0] and str(target) in lines[0], lines[0]


def files_of(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- train --------------------------------------------------------------------------------------------------
@pytest.fixture
def train_config(run_dict, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(run_dict(steps=3)), encoding="utf-8")
    return path


def same_training(a: Path, b: Path) -> None:
    """Two run folders of the same config hold the same files, config and weights."""
    assert files_of(a) == files_of(b)
    assert (a / "config.toml").read_bytes() == (b / "config.toml").read_bytes()
    state_a = torch.load(a / "last.pt", weights_only=True)["method"]
    state_b = torch.load(b / "last.pt", weights_only=True)["method"]
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    loss = [json.loads(line).get("loss") for line in (a / "metrics.jsonl").read_text().splitlines()]
    assert loss == [json.loads(line).get("loss") for line in (b / "metrics.jsonl").read_text().splitlines()]


def test_two_trains_on_one_folder(train_config: Path, tmp_path: Path) -> None:
    out, alone = tmp_path / "run", tmp_path / "alone"
    first = voxuda("train", "--config", str(train_config), "--out", str(out))
    freeze_when_locked(first, out)
    try:
        code, _, err = finish(voxuda("train", "--config", str(train_config), "--out", str(out)))
        assert_lock_line(code, err, first.pid, out)
    finally:
        first.send_signal(signal.SIGCONT)
    code, stdout, err = finish(first)
    assert code == 0, err
    assert not lock_path_for(out).exists()  # released and removed
    assert main(["train", "--config", str(train_config), "--out", str(alone)]) == 0  # alone, in process
    same_training(out, alone)


def test_killed_holder_lock_is_taken_over(train_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = voxuda("train", "--config", str(train_config), "--out", str(out))
    freeze_when_locked(first, out)
    first.kill()  # kill -9 while holding the lock: the lock file stays, naming a dead PID
    first.communicate()
    assert read_holder(lock_path_for(out)).pid == first.pid
    code, _, err = finish(voxuda("train", "--config", str(train_config), "--out", str(out)))
    assert code == 0, err
    assert f"took over the stale lock of {out} left by PID {first.pid}" in err
    assert (out / "last.pt").is_file() and not lock_path_for(out).exists()


# -- simulate -----------------------------------------------------------------------------------------------


def test_two_simulates_on_one_folder_and_umask(tmp_path: Path) -> None:
    preset = tmp_path / "small.toml"
    preset.write_text(SMALL_SHIFT_PRESET, encoding="utf-8")
    out, alone = tmp_path / "data", tmp_path / "alone"
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stale, live = tmp_path / f".data.partial-{dead.pid}", tmp_path / f".data.partial-{os.getppid()}"
    for partial in (stale, live):
        partial.mkdir()
    args = ("simulate", "--preset", str(preset), "--no-progress", "--workers", "1")
    first = voxuda(*args, "--out", str(out), umask=0o027)
    freeze_when_locked(first, out)
    try:
        code, _, err = finish(voxuda(*args, "--out", str(out)))
        assert_lock_line(code, err, first.pid, out)
    finally:
        first.send_signal(signal.SIGCONT)
    code, _, err = finish(first)
    assert code == 0, err
    assert not stale.exists() and live.exists()  # a partial folder is removed only when its PID is dead
    code, _, err = finish(voxuda(*args, "--out", str(alone), umask=0o022))
    assert code == 0, err
    assert files_of(out) == files_of(alone)
    for name in files_of(out):
        if (out / name).is_file():
            assert (out / name).read_bytes() == (alone / name).read_bytes(), name
            assert (out / name).stat().st_mode & 0o777 == 0o640, name  # 0666 & ~027
            assert (alone / name).stat().st_mode & 0o777 == 0o644, name
    assert not list(tmp_path.glob(".*.lock"))


# -- benchmark ----------------------------------------------------------------------------------------------
def bench(out: Path, data_root: Path) -> subprocess.Popen[str]:
    return voxuda("benchmark", "--suite", "tiny", "--only", "source_only", "--out", str(out),
                  "--data-root", str(data_root), "--no-plots", "--no-progress",
                  "--set", "trainer.steps=4", "--set", "trainer.eval_every=2")


def test_second_benchmark_stops_at_the_lock(tmp_path: Path) -> None:
    """The second benchmark touches nothing: no data simulated, no run folder, while the first holds on."""
    out = tmp_path / "out"
    first = bench(out, tmp_path / "data")
    freeze_when_locked(first, out)
    try:
        code, _, err = finish(bench(out, tmp_path / "data2"))
        assert_lock_line(code, err, first.pid, out)
        assert not (tmp_path / "data2").exists()
    finally:
        first.kill()
        first.communicate()


@pytest.mark.slow
def test_two_benchmarks_on_one_folder(tmp_path: Path) -> None:
    out, alone = tmp_path / "out", tmp_path / "alone"
    first = bench(out, tmp_path / "data")
    freeze_when_locked(first, out)
    try:
        code, _, err = finish(bench(out, tmp_path / "data"))
        assert_lock_line(code, err, first.pid, out)
    finally:
        first.send_signal(signal.SIGCONT)
    code, _, err = finish(first)
    assert code == 0, err
    code, _, err = finish(bench(alone, tmp_path / "data"))
    assert code == 0, err
    assert files_of(out) == files_of(alone)
    assert (out / "results.csv").read_bytes() == (alone / "results.csv").read_bytes()
    run = Path("runs") / "insitu_ribosome" / "source_only" / "seed0"
    same_training(out / run, alone / run)


# -- the lock itself, in process ----------------------------------------------------------------------------
def test_lock_is_reentrant_and_released(tmp_path: Path) -> None:
    target = tmp_path / "folder"
    with output_lock(target, command="voxuda test") as lock:
        assert lock == lock_path_for(target) and read_holder(lock).pid == os.getpid()
        assert read_holder(lock).command == "voxuda test"
        with output_lock(target):  # the same process may lock it again (library code under a command)
            assert lock.exists()
        assert lock.exists()
    assert not lock_path_for(target).exists() and not target.exists()


def test_other_ranks_do_not_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    with output_lock(tmp_path / "folder") as lock:
        assert lock is None and not lock_path_for(tmp_path / "folder").exists()

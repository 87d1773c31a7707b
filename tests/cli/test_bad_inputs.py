"""Bad inputs of train, benchmark, simulate and segment: one line, a non-zero exit (2 for a usage error, 1 for
a runtime error), and nothing left under the output's name; the CLI's mapping of memory, divergence and
write failures; files written atomically get the umask's mode; stale temporaries of dead writers go."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from voxuda.atomic import remove_stale_temporaries, write_json, write_text
from voxuda.cli import describe_error, main
from voxuda.config import dump_toml
from voxuda.locks import lock_path_for


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single ``voxuda: error:`` line of stderr (warnings and notes aside)."""
    err = capsys.readouterr().err
    aside = ("voxuda: warning", "voxuda: note")
    lines = [line for line in err.strip().splitlines() if not line.startswith(aside)]
    assert len(lines) == 1 and lines[0].startswith("voxuda: error: ") and "Traceback" not in err, err
    return lines[0]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


# -- train --------------------------------------------------------------------------------------------------
BAD_TRAIN = [
    ("data.box=7", "data.box: 7 is not a multiple of 2"),
    ("trainer.lr=inf", "lr must be finite, got inf"),
    ("trainer.lr=1e400", "lr must be finite, got inf"),
    ("method.ce_weight=inf", "ce_weight must be finite, got inf"),
    ("method.ce_weight=nan", "ce_weight must not be negative, got nan"),
    ("trainer.batch_size=1e9", "trainer.batch_size 1000000000: needs at least"),
]


@pytest.mark.parametrize(("override", "message"), BAD_TRAIN)
def test_bad_train_value_writes_nothing(run_dict, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
                                        override: str, message: str) -> None:
    config = tmp_path / "run.toml"
    config.write_text(dump_toml(run_dict()), encoding="utf-8")
    out = tmp_path / "runs" / "exp"
    assert main(["train", "--config", str(config), "--set", override, "--out", str(out)]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()  # validated before the lock, the folder or any file


def test_data_error_leaves_no_run_folder(tiny_dataset: Path, run_dict, tmp_path: Path,  # type: ignore[no-untyped-def]
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    with mrcfile.new(root / "source_train_0.mrc", overwrite=True) as mrc:  # a 0-voxel volume
        mrc.set_data(np.zeros((0, 0, 0), np.float32))
    data = run_dict()
    data["data"]["root"] = str(root)
    config = tmp_path / "run.toml"
    config.write_text(dump_toml(data), encoding="utf-8")
    out = tmp_path / "exp"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert "source_train_0.mrc: header dimensions" in one_error_line(capsys)  # the MRC reader's line
    assert not out.exists() and not lock_path_for(out).exists()


def test_write_failure_and_divergence_are_runtime_errors(run_dict, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import voxuda.engine.trainer as trainer

    config = tmp_path / "run.toml"
    config.write_text(dump_toml(run_dict(steps=1)), encoding="utf-8")

    def full_disk(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "last.pt")

    monkeypatch.setattr(trainer, "save_atomic", full_disk)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "a")]) == 1
    assert "No space left on device" in (line := one_error_line(capsys)) and "free disk space" in line

    def diverge(*_: object) -> None:
        raise FloatingPointError("loss became nan at step 1; lower trainer.lr")

    monkeypatch.setattr(trainer._Trainer, "_one_step", diverge)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "b")]) == 1
    assert "training diverged: loss became nan at step 1" in one_error_line(capsys)
    with pytest.raises(FloatingPointError):  # --traceback after the sub-command, too
        main(["train", "--config", str(config), "--out", str(tmp_path / "c"), "--traceback"])


def test_memory_errors_are_one_line_with_a_hint() -> None:
    class OutOfMemoryError(RuntimeError):  # how torch.cuda names it; recognised without importing CUDA
        pass

    try:
        torch.empty(2**48)  # 1 PiB: torch's CPU allocator refuses it with a RuntimeError
    except RuntimeError as exc:
        cpu: BaseException = exc
    else:  # pragma: no cover - an allocator that promises a petabyte
        pytest.skip("this allocator accepted 1 PiB")
    cuda = OutOfMemoryError("CUDA out of memory. Tried 2 GiB")
    for exc in (MemoryError("Unable to allocate 8 TiB"), cuda, cpu):
        described = describe_error(exc)
        assert described is not None
        message, code = described
        assert code == 1 and "out of memory" in message and "lower trainer.batch_size" in message
    assert describe_error(KeyError("a bug")) is None  # bugs keep their traceback


# -- benchmark ----------------------------------------------------------------------------------------------
_SUITE = """
name = "badsuite"
description = "a suite with a method nobody registered"
[defaults]
preset = "tiny"
targets = ["insitu_ribosome"]
seeds = 1
[[runs]]
label = "fine"
method = "source_only"
[[runs]]
label = "typo"
method = "sauce_only"
"""


@pytest.mark.parametrize("dry_run", [False, True])
def test_benchmark_rejects_bad_runs_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    dry_run: bool) -> None:
    out, data = tmp_path / "out", tmp_path / "data"
    common = ["--out", str(out), "--data-root", str(data), "--no-progress"]
    common += ["--dry-run"] if dry_run else []
    assert main(["benchmark", "--suite", "tiny", "--set", "trainer.steps=-1", *common]) == 2
    assert "run 'source_only'" in (line := one_error_line(capsys)) and "steps must be positive" in line
    suite = tmp_path / "bad.toml"
    suite.write_text(_SUITE, encoding="utf-8")
    assert main(["benchmark", "--suite", str(suite), *common]) == 2
    assert "run 'typo'" in (line := one_error_line(capsys)) and "unknown method 'sauce_only'" in line
    assert main(["benchmark", "--suite", "tiny", "--only", "nobody", *common]) == 2
    assert "--only: no run labelled 'nobody'" in one_error_line(capsys)
    assert not out.exists() and not data.exists()  # no bench.json, no simulated data, no folder


# -- simulate -----------------------------------------------------------------------------------------------
def test_simulate_names_a_bad_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--preset", "tiny", "--seed", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "--seed -1" in one_error_line(capsys)
    assert not (tmp_path / "x").exists()


# -- segment ------------------------------------------------------------------------------------------------
@pytest.fixture
def segment_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """An (untrained) run folder and a 24^3 tomogram."""
    from voxuda.api import build_method
    from voxuda.engine.checkpoint import FORMAT, VERSION, save_atomic

    config = {"method": {"name": "source_only", "backbone": {"name": "unet3d", "widths": [4, 8]}},
              "data": {"box": 16}}
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(dump_toml(config), encoding="utf-8")
    state = build_method(config["method"]).state_dict()
    save_atomic({"format": FORMAT, "version": VERSION, "step": 1, "method": state}, run / "last.pt")
    tomogram = tmp_path / "tomo.mrc"
    with mrcfile.new(tomogram) as mrc:
        mrc.set_data(np.random.default_rng(0).standard_normal((24, 24, 24)).astype(np.float32))
        mrc.voxel_size = 10.0
    return run, tomogram


@pytest.mark.parametrize(("option", "message"), [
    (["--model-voxel-size", "0"], "--model-voxel-size 0.0: must be a positive voxel size"),
    (["--model-voxel-size", "-5"], "--model-voxel-size -5.0: must be a positive voxel size"),
    (["--model-voxel-size", "nan"], "--model-voxel-size nan: must be a positive voxel size"),
    (["--patch", "100000"], "--patch 100000 with --batch 4: needs at least"),
])
def test_segment_rejects_bad_sizes(segment_inputs: tuple[Path, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str], option: list[str],
                                   message: str) -> None:
    run, tomogram = segment_inputs
    labels = tmp_path / "labels.mrc"
    assert main(["segment", str(run), str(tomogram), "-o", str(labels), "--no-progress", *option]) == 2
    assert message in one_error_line(capsys)
    assert not labels.exists() and not lock_path_for(labels).exists()


def test_segment_cleans_dead_writers_temporaries(segment_inputs: tuple[Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run, tomogram = segment_inputs
    labels = tmp_path / "labels.mrc"
    stale = tmp_path / f".labels.mrc.tmp-{dead_pid()}"
    live = tmp_path / f".labels.mrc.tmp-{os.getppid()}"  # a running process's: never touched
    other = tmp_path / f".other.mrc.tmp-{dead_pid()}"  # another output's: not segment's business
    for path in (stale, live, other):
        path.write_bytes(b"half a label map")
    assert main(["segment", str(run), str(tomogram), "-o", str(labels), "--no-progress"]) == 0
    assert labels.is_file() and not stale.exists() and live.exists() and other.exists()


def test_segment_and_evaluate_refuse_pickled_code_without_torch_advice(
        segment_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, tomogram = segment_inputs
    code_carrying = {"method": {"w": torch.zeros(1)}, "hook": subprocess.CompletedProcess(["x"], 0)}
    torch.save(code_carrying, run / "last.pt")
    assert main(["segment", str(run), str(tomogram), "-o", str(tmp_path / "l.mrc"), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert "not a readable checkpoint" in line and "CompletedProcess" in line
    assert "weights_only" not in line and "trust" not in line and "safe_globals" not in line
    (run / "run.json").write_text("{}", encoding="utf-8")
    assert main(["evaluate", str(run), "--checkpoint", "last"]) == 2
    line = one_error_line(capsys)
    assert "not a readable checkpoint" in line and "CompletedProcess" in line
    assert "weights_only" not in line and "trust" not in line and "safe_globals" not in line


# -- atomic writes ------------------------------------------------------------------------------------------
def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    from voxuda.engine.checkpoint import save_atomic

    old = os.umask(0o027)
    try:
        paths = [write_text(tmp_path / "a.toml", "x = 1\n"), write_json(tmp_path / "b.json", {"a": 1}),
                 save_atomic({"w": torch.zeros(2)}, tmp_path / "c.pt")]
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in paths] == [0o640] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.toml", "b.json", "c.pt"]  # no temporaries


def test_remove_stale_temporaries_only_of_dead_writers(tmp_path: Path) -> None:
    dead, live = dead_pid(), os.getppid()
    names = [f".last.pt.tmp-{dead}-0a1b", f".run.json.tmp-{live}-0a1b", ".config.toml.k2j4_9xz.tmp",
             "keep.txt"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert remove_stale_temporaries(tmp_path) == [f".last.pt.tmp-{dead}-0a1b"]
    assert remove_stale_temporaries(tmp_path, legacy=True) == [".config.toml.k2j4_9xz.tmp"]  # under a lock
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".run.json.tmp-{live}-0a1b", "keep.txt"])


# -- outputs in use -----------------------------------------------------------------------------------------
def hold_lock(target: Path) -> subprocess.Popen[str]:
    """Another process holding ``target``'s lock until its stdin closes (it prints ``locked`` first)."""
    code = ("import sys; from voxuda.locks import output_lock\n"
            f"with output_lock({str(target)!r}, command='voxuda train'):\n"
            "    print('locked', flush=True); sys.stdin.read()\n")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=repo, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_evaluate_segment_and_extract_stop_at_a_held_lock(segment_inputs: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run, tomogram = segment_inputs
    labels = tmp_path / "labels.mrc"
    extracted = tmp_path / "extracted"
    for target, argv in ((run, ["evaluate", str(run)]),
                         (labels, ["segment", str(run), str(tomogram), "-o", str(labels), "--no-progress"]),
                         (extracted, ["extract", str(tomogram), "--grid", "--box", "8",
                                      "--out", str(extracted), "--no-progress"])):
        holder = hold_lock(target)
        try:
            assert main(argv) == 1
            line = one_error_line(capsys)
            assert f"{target}: in use by another voxuda process (PID {holder.pid}, voxuda train)" in line
        finally:
            holder.communicate("")
    assert not labels.exists() and not extracted.exists()

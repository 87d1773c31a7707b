"""``--device``: ``auto`` (the default of train, evaluate and segment) picks CUDA only where it exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from voxuda.cli import build_parser, main
from voxuda.engine.runtime import resolve_device
from voxuda.errors import ConfigError


@pytest.mark.parametrize("available", [False, True])
def test_auto_follows_cuda_availability(monkeypatch: pytest.MonkeyPatch, available: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device("auto").type == ("cuda" if available else "cpu")


def test_bad_or_missing_devices_name_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--device: 'cuda:1' requested but CUDA is not available"):
        resolve_device("cuda:1", "--device")
    with pytest.raises(ConfigError, match="--device: 'gpu' is not a device"):
        resolve_device("gpu", "--device")


def test_auto_is_the_default_of_every_command_that_runs_a_model() -> None:
    from voxuda.engine.run_config import TrainerConfig

    parser = build_parser()
    assert parser.parse_args(["segment", "r", "t.mrc", "--out", "l.mrc"]).device == "auto"
    assert parser.parse_args(["evaluate", "r"]).device == "auto"
    assert parser.parse_args(["train", "--config", "c.toml"]).device is None  # the config's, which is:
    assert TrainerConfig().device == "auto"


def test_segment_with_a_bad_device_is_one_line(planted, trained_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    tomo, _ = planted
    out = tmp_path / "l.mrc"
    assert main(["segment", str(trained_run), str(tomo), "--out", str(out), "--device", "gpu"]) != 0
    err = capsys.readouterr().err
    assert "--device: 'gpu' is not a device" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_segment_on_cuda_agrees_with_cpu(planted, trained_run: Path, tmp_path: Path) -> None:
    """The same run and tomogram give the same labels and nearly the same probabilities on both devices
    (cuDNN's convolutions sum in another order, so only voxels at p = 0.5 may flip)."""
    import mrcfile
    import numpy as np

    tomo, _ = planted
    outs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.mrc"
        probs = tmp_path / f"{device}_p.mrc"
        argv = ["segment", str(trained_run), str(tomo), "--out", str(out), "--probabilities", str(probs),
                "--patch", "32", "--no-progress", "--device", device]
        assert main(argv) == 0
        with mrcfile.open(out) as labels, mrcfile.open(probs) as p:
            outs[device] = (labels.data.copy(), p.data.copy())
    (cpu_labels, cpu_p), (gpu_labels, gpu_p) = outs["cpu"], outs["cuda"]
    assert np.abs(cpu_p.astype(np.float64) - gpu_p).max() < 1e-3
    assert (cpu_labels != gpu_labels).mean() < 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cpu_module_segmented_on_cuda_stays_on_the_cpu(planted, tmp_path: Path) -> None:
    from voxuda.segment import segment_tomogram

    tomo, _ = planted
    model = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1))
    segment_tomogram(model, tomo, tmp_path / "l.mrc", device="cuda", progress=False)
    assert next(model.parameters()).device.type == "cpu"

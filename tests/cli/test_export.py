"""``voxuda export``: the exported model gives the logits of the run's reported network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_run_dict
from voxuda.api import build_method
from voxuda.cli import main
from voxuda.config import dump_toml, load_toml
from voxuda.engine.checkpoint import load_checkpoint
from voxuda.methods.segmentation import LogitsOnly


@pytest.fixture(scope="module")
def teacher_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mean-teacher run (reports its teacher), trained far enough that student and teacher differ."""
    folder = tmp_path_factory.mktemp("export")
    config = tiny_run_dict(tiny_dataset, "mean_teacher", steps=3, lr=3e-2)
    config["evaluation"]["split"] = ""
    (folder / "run.toml").write_text(dump_toml(config), encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    assert main(["train", "--config", str(folder / "run.toml"), "--out", str(folder / "run"),
                 "--no-progress"]) == 0
    torch.set_num_threads(threads)
    return folder / "run"


def _networks(run: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(reported, other) networks of the run, as plain logits modules."""
    method = build_method(load_toml(run / "config.toml")["method"])
    method.load_state_dict(load_checkpoint(run / "last.pt")["method"])
    method.eval()
    assert method.reported_network == "teacher"
    return LogitsOnly(method.networks()["teacher"]), LogitsOnly(method.networks()["student"])


def _random_input() -> torch.Tensor:
    return torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(42))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_gives_the_reported_network_logits(teacher_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vu.torchscript.pt"
    assert main(["export", str(teacher_run), "--format", "torchscript", "--out", str(out)]) == 0
    assert "max |logit difference|" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, out.name + ".json"]
    exported = torch.jit.load(str(out))
    reported, other = _networks(teacher_run)
    x = _random_input()
    with torch.no_grad():
        got, want, student = exported(x), reported(x), other(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got - student).abs().max() > 1e-3  # the student would not pass: the check can tell them apart
    card = json.loads((tmp_path / (out.name + ".json")).read_text())
    assert card["method"] == "mean_teacher" and card["canonical_polarity"] == "bright"
    assert card["check_max_abs_logit_difference"] < 1e-5


def test_onnx_gives_the_reported_network_logits(teacher_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the optional onnx extra is not installed (voxuda[onnx])")
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime (the onnx extra) is not installed")
    out = tmp_path / "vu.onnx"
    assert main(["export", str(teacher_run), "--format", "onnx", "--out", str(out)]) == 0
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = _random_input()
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    reported, _ = _networks(teacher_run)
    with torch.no_grad():
        torch.testing.assert_close(got, reported(x), atol=1e-4, rtol=1e-4)


def test_bad_export_requests_are_one_line_and_write_nothing(teacher_run: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.pt")], "nowhere"),
        (["export", str(teacher_run), "--out", str(tmp_path / "missing" / "m.pt")], "does not exist"),
        (["export", str(teacher_run), "--out", str(tmp_path / "m.pt"), "--patch", "5"], "--patch 5"),
    ]
    for argv, message in cases:
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []

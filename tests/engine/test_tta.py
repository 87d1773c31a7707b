"""Test-time orientation averaging (``evaluation.tta``, ``voxuda evaluate --tta``): known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from tests.conftest import tiny_run_dict
from tests.engine.test_decision import Brightness, _cubes
from voxuda.bench.executor import BenchEngine
from voxuda.cli import main
from voxuda.config import ComponentRef
from voxuda.engine.evaluate import evaluate_predictor, evaluate_run
from voxuda.engine.inference import OrientationAveraged, with_test_time_orientations
from voxuda.engine.pipeline import train_and_evaluate
from voxuda.engine.run_config import run_config_from_dict


class Ramp(nn.Module):
    """Foreground logit rising along y (H): not flip-equivariant, so the average has a known closed form."""

    def forward(self, x: Tensor) -> Tensor:
        y = torch.linspace(-2.0, 2.0, x.shape[-2]).view(1, 1, 1, -1, 1).expand_as(x)
        return torch.cat([torch.zeros_like(x), y + x], dim=1)


class FixedPattern(nn.Module):
    """Brightness read through a fixed, orientation-bound error field: each view sees other errors at a voxel,
    as a network's noise-driven mistakes differ between views the missing wedge cannot tell apart."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.field = 0.6 * torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(5))
        self.inner = Brightness(a=4.0, b=-2.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x + self.field)


def test_a_pointwise_network_is_unchanged_and_none_is_the_network_itself() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 4, 1), nn.Tanh(), nn.Conv3d(4, 2, 1)).eval()
    x = torch.randn(2, 1, 6, 7, 8)
    with torch.no_grad():
        want = net(x).softmax(1)
        for orientations in ("wedge", "flips"):
            got = with_test_time_orientations(net, orientations)(x).softmax(1)
            assert torch.allclose(got, want, atol=1e-6)
    assert with_test_time_orientations(net, "none") is net
    with pytest.raises(ValueError, match="wedge"):
        with_test_time_orientations(net, "rotations")


def test_the_average_is_over_the_views_brought_back_to_the_input_frame() -> None:
    x = torch.zeros(1, 1, 3, 5, 4)
    averaged = OrientationAveraged(Ramp(), "wedge")
    assert len(averaged.orientations) == 4
    with torch.no_grad():
        p = averaged(x).softmax(1)[0, 1]
    ramp = torch.sigmoid(torch.linspace(-2.0, 2.0, 5))
    # half of the wedge views flip y: the mean of the ramp and its mirror, the same at every (z, x)
    want = ((ramp + ramp.flip(0)) / 2).view(1, 5, 1).expand(3, 5, 4)
    assert torch.allclose(p, want, atol=1e-6)


def test_averaging_views_with_independent_errors_raises_dice() -> None:
    test = _cubes(12, 1)
    model = FixedPattern((16, 16, 16))
    plain = evaluate_predictor(model, test, num_classes=2, batch_size=4)["overall"]["dice_fg"]
    averaged = evaluate_predictor(OrientationAveraged(model, "wedge"), test, num_classes=2,
                                  batch_size=4)["overall"]["dice_fg"]
    assert averaged > plain + 0.03, (plain, averaged)


def test_evaluate_and_the_benchmark_engine_read_out_with_the_average(
        tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    data = tiny_run_dict(tiny_dataset, steps=2)
    train_and_evaluate(run_config_from_dict(data), out)
    # read out at the source's fraction, so that the barely trained U-Net calls some foreground
    plain = evaluate_run(out, split="test", checkpoint="last", source_prior=True)
    assert plain["tta"] == "none" and plain["overall"]["dice_fg"] > 0
    averaged = evaluate_run(out, split="test", checkpoint="last", source_prior=True, tta="wedge")
    assert averaged["tta"] == "wedge" and (out / "eval_test_last_fgprior-source_tta-wedge.json").is_file()
    assert averaged["overall"]["dice_fg"] != plain["overall"]["dice_fg"]  # the U-Net is not flip-equivariant
    data["evaluation"].update(source_prior=True, tta="wedge")
    result = BenchEngine().evaluate(data, out, out / "last.pt", ComponentRef("identity"))
    assert result.dice == pytest.approx(averaged["overall"]["dice_fg"])
    assert main(["evaluate", str(out), "--checkpoint", "last", "--tta", "flips"]) == 0
    flips = json.loads((out / "eval_test_last_tta-flips.json").read_text())
    assert flips["tta"] == "flips"
    capsys.readouterr()


def test_segment_averages_each_window_and_refuses_an_unknown_set(tmp_path: Path) -> None:
    """``segment_tomogram(..., tta=...)``: a y-ramp network's probabilities become the ramp's mirror mean."""
    import mrcfile
    import numpy as np

    from voxuda.segment import SegmentError, segment_tomogram

    tomo = tmp_path / "flat.mrc"
    with mrcfile.new(tomo) as mrc:
        mrc.set_data(np.zeros((8, 8, 8), np.float32))
        mrc.voxel_size = 10.0
    probs = {}
    for tta in ("none", "wedge"):
        out, p = tmp_path / f"{tta}.mrc", tmp_path / f"{tta}_p.mrc"
        segment_tomogram(Ramp(), tomo, out, probabilities=p, patch=8, overlap=0.0, normalization="none",
                         tta=tta, progress=False, device="cpu")
        with mrcfile.open(p) as mrc:
            probs[tta] = np.array(mrc.data)
    ramp = torch.sigmoid(torch.linspace(-2.0, 2.0, 8)).numpy()
    np.testing.assert_allclose(probs["none"][0, :, 0], ramp, atol=1e-6)
    np.testing.assert_allclose(probs["wedge"][0, :, 0], (ramp + ramp[::-1]) / 2, atol=1e-6)
    with pytest.raises(SegmentError, match="tta 'rotations'"):
        segment_tomogram(Ramp(), tomo, tmp_path / "x.mrc", tta="rotations", progress=False, device="cpu")

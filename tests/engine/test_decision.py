"""The test-time decision rule: argmax, or a foreground threshold calibrated to a user's prior range."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from tests.conftest import tiny_run_dict
from voxuda.bench.executor import BenchEngine
from voxuda.cli import main
from voxuda.config import ComponentRef
from voxuda.engine.data import DomainSplit, load_run_data
from voxuda.engine.decision import PriorThreshold, calibrate_prior_threshold, threshold_for_fraction
from voxuda.engine.evaluate import evaluate_predictor, evaluate_run
from voxuda.engine.pipeline import train_and_evaluate
from voxuda.engine.run_config import run_config_from_dict
from voxuda.errors import ConfigError


@pytest.mark.parametrize("fraction", [0.0, 0.013, 0.25, 0.5, 1.0])
def test_threshold_gives_the_asked_fraction(fraction: float) -> None:
    p = torch.rand(20_000, generator=torch.Generator().manual_seed(3))
    t = threshold_for_fraction(p, fraction)
    assert float((p > t).float().mean()) == pytest.approx(round(fraction * p.numel()) / p.numel(), abs=1e-9)


class Brightness(nn.Module):
    """Two-class logits ``[0, a x + b]``: with a negative ``b`` it calls only the brightest voxels foreground,
    i.e. a model that under-segments, like the source-only model on the crowded content targets."""

    def __init__(self, a: float = 4.0, b: float = -6.0) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([torch.zeros_like(x), self.a * x + self.b], dim=1)


def _cubes(n: int, seed: int) -> DomainSplit:
    """Volumes 16^3 holding one bright cube each (foreground 1 + noise), labels known."""
    g = torch.Generator().manual_seed(seed)
    volumes = 0.35 * torch.randn(n, 1, 16, 16, 16, generator=g)
    labels = torch.zeros(n, 16, 16, 16, dtype=torch.long)
    for i in range(n):
        z, y, x = (int(v) for v in torch.randint(2, 8, (3,), generator=g))
        labels[i, z:z + 6, y:y + 6, x:x + 6] = 1
    volumes = volumes + labels[:, None].float()
    return DomainSplit(volumes=volumes, labels=labels, meta=[{"class": "cube"}] * n)


def test_a_calibrated_threshold_recovers_an_under_segmenting_models_foreground() -> None:
    model, train, test = Brightness(), _cubes(8, 0), _cubes(8, 1)
    assert test.labels is not None and train.labels is not None
    true_fraction = float((train.labels > 0).float().mean())  # 216 / 4096 = 5.3 %
    prior = (0.6 * true_fraction, 1.5 * true_fraction)  # the user's range, right within a factor of 1.5
    decision = calibrate_prior_threshold(model, train.volumes, prior, batch_size=4)
    assert decision.argmax_fraction < 0.3 * true_fraction  # argmax keeps only the brightest voxels
    assert decision.target_fraction == pytest.approx(prior[0])
    called = decision(torch.softmax(model(train.volumes), dim=1))
    assert float((called > 0).float().mean()) == pytest.approx(prior[0], abs=1 / called.numel())
    argmax = evaluate_predictor(model, test, num_classes=2, batch_size=4)["overall"]["dice_fg"]
    calibrated = evaluate_predictor(model, test, num_classes=2, batch_size=4,
                                    decision=decision)["overall"]["dice_fg"]
    assert calibrated > argmax + 0.3, (argmax, calibrated)


def test_inside_the_prior_the_decision_is_argmax() -> None:
    model, volumes = Brightness(b=-1.0), _cubes(4, 2).volumes
    decision = calibrate_prior_threshold(model, volumes, (0.0, 1.0), batch_size=4)
    assert decision.threshold is None and decision.target_fraction == decision.argmax_fraction
    probs = torch.softmax(model(volumes), dim=1)
    assert torch.equal(decision(probs), probs.argmax(dim=1))
    assert decision.record()["rule"] == "prior_threshold"


def test_more_classes_keep_the_most_probable_foreground_class() -> None:
    probs = torch.tensor([[0.5, 0.2, 0.3], [0.9, 0.06, 0.04], [0.2, 0.5, 0.3]]).T.reshape(1, 3, 3, 1, 1)
    labels = PriorThreshold(threshold=0.3, fg_prior=(0.1, 0.9), argmax_fraction=0.3,
                            target_fraction=0.6)(probs)
    assert labels.reshape(-1).tolist() == [2, 0, 1]  # p_fg 0.5 (class 2 wins), 0.1 (background), 0.8


def test_a_bad_range_is_refused_with_the_option_named(tiny_dataset: Path) -> None:
    data = tiny_run_dict(tiny_dataset)
    data["evaluation"]["fg_prior"] = [0.5, 0.1]
    with pytest.raises(ConfigError, match="fg_prior"):
        run_config_from_dict(data)


def test_evaluation_and_the_benchmark_engine_apply_the_prior(tiny_dataset: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    train_and_evaluate(run_config_from_dict(tiny_run_dict(tiny_dataset, steps=2)), out)
    plain = evaluate_run(out, split="test", checkpoint="last")
    assert plain["decision"] == {"rule": "argmax"}
    # the same weights under a prior far above anything the 2-step model predicts: more foreground called
    data = tiny_run_dict(tiny_dataset, steps=2)
    data["evaluation"]["fg_prior"] = [0.6, 0.9]
    text = (out / "config.toml").read_text()
    evaluation = text.index("[evaluation]")
    head, tail = text[:evaluation], text[evaluation:]
    assert "fg_prior = []" in tail
    (out / "config.toml").write_text(head + tail.replace("fg_prior = []", "fg_prior = [0.6, 0.9]", 1))
    primed = evaluate_run(out, split="test", checkpoint="last")
    assert primed["decision"]["rule"] == "prior_threshold"
    assert primed["decision"]["target_fraction"] == pytest.approx(0.6)
    assert primed["overall"] != plain["overall"]
    engine = BenchEngine()
    result = engine.evaluate(data, out, out / "last.pt", ComponentRef("identity"))
    assert result.dice == pytest.approx(primed["overall"]["dice_fg"])
    # the command line gives the range for one evaluation, written to its own file
    assert main(["evaluate", str(out), "--checkpoint", "last", "--fg-prior", "0.6", "0.9"]) == 0
    again = json.loads((out / "eval_test_last_fgprior-0.6-0.9.json").read_text())
    assert again["overall"] == primed["overall"] and again["decision"]["fg_prior"] == [0.6, 0.9]
    assert "decision: fg_prior [0.6, 0.9]" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--checkpoint", "last", "--fg-prior", "0.9", "0.6"]) == 2
    assert "--fg-prior 0.9 0.6: must be [] or [lo, hi]" in capsys.readouterr().err


def test_source_prior_and_a_user_range_are_refused_together(tiny_dataset: Path) -> None:
    data = tiny_run_dict(tiny_dataset)
    data["evaluation"]["fg_prior"] = [0.1, 0.2]
    data["evaluation"]["source_prior"] = True
    with pytest.raises(ConfigError, match="source_prior = true and fg_prior"):
        run_config_from_dict(data)


def test_the_source_prior_reads_out_at_the_source_train_fraction(tiny_dataset: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    data = tiny_run_dict(tiny_dataset, steps=2)
    train_and_evaluate(run_config_from_dict(data), out)
    rc = run_config_from_dict(data)
    source = load_run_data(rc.data, rc.seed).source_train
    assert source.labels is not None
    fraction = float((source.labels > 0).float().mean())
    assert 0 < fraction < 0.5
    result = evaluate_run(out, split="test", checkpoint="last", source_prior=True)
    decision = result["decision"]
    assert decision["origin"] == "source fraction" and decision["fg_prior"] == [fraction, fraction]
    assert decision["threshold"] is not None  # the 2-step model's argmax is not at the source's fraction
    assert decision["target_fraction"] == pytest.approx(fraction)
    assert (out / "eval_test_last_fgprior-source.json").is_file()
    # the benchmark engine applies the same readout when the run's config asks for it
    data["evaluation"]["source_prior"] = True
    engine = BenchEngine()
    assert engine.evaluate(data, out, out / "last.pt", ComponentRef("identity")).dice == pytest.approx(
        result["overall"]["dice_fg"])
    assert main(["evaluate", str(out), "--checkpoint", "last", "--source-prior"]) == 0
    assert "(source fraction)" in capsys.readouterr().out
    both = ["--source-prior", "--fg-prior", "0.1", "0.2"]
    assert main(["evaluate", str(out), "--checkpoint", "last", *both]) == 2
    assert "--fg-prior and --source-prior" in capsys.readouterr().err


def test_the_calibration_script_shows_dice_rising_as_an_under_segmenting_models_threshold_falls() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from foreground_calibration import THRESHOLDS, calibration_row

    row = calibration_row(Brightness(), _cubes(6, 4), limit=6)
    assert row["frac@0.5"] < 0.3 * row["true"]
    assert row[f"dice@{THRESHOLDS[-1]}"] > row["dice@0.5"] + 0.3
    assert [row[f"frac@{t}"] for t in THRESHOLDS] == sorted(row[f"frac@{t}"] for t in THRESHOLDS)

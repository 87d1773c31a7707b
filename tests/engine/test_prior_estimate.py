"""The label-free estimate of the target's foreground fraction (``evaluation.prior_estimate = "em"``): the
Saerens-Latinne-Decaestecker EM re-estimation of a class prior under a prior shift, and the readout aimed at
it. The known answer: posteriors that are exactly Bayes under the source prior, on a target drawn at another
prior."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from tests.conftest import tiny_run_dict
from voxuda.bench.executor import BenchEngine
from voxuda.cli import main
from voxuda.config import ComponentRef
from voxuda.engine.data import DomainSplit
from voxuda.engine.decision import (
    calibrate_estimated_threshold,
    em_foreground_prior,
    fit_bias_corrected_temperature,
)
from voxuda.engine.evaluate import evaluate_predictor, evaluate_run
from voxuda.engine.pipeline import train_and_evaluate
from voxuda.engine.run_config import run_config_from_dict
from voxuda.errors import ConfigError

MU, SIGMA = 1.6, 1.0  # foreground voxels N(MU, SIGMA), background N(0, SIGMA): the classes overlap


class BayesUnderPrior(nn.Module):
    """Two-class logits whose softmax is the exact Bayes posterior of the Gaussian voxel model above when
    foreground has prior ``prior``: logit = log(prior / (1 - prior)) + (MU x - MU^2 / 2) / SIGMA^2; with
    ``sharpen`` and ``shift`` the logit becomes ``sharpen * logit + shift``, an over-confident, biased
    network like those EM needs calibrated."""

    def __init__(self, prior: float, sharpen: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        self.offset = math.log(prior / (1 - prior)) - MU**2 / (2 * SIGMA**2)
        self.sharpen, self.shift = sharpen, shift

    def forward(self, x: Tensor) -> Tensor:
        logit = MU / SIGMA**2 * x + self.offset
        return torch.cat([torch.zeros_like(x), self.sharpen * logit + self.shift], dim=1)


def _voxels(n: int, prior: float, seed: int) -> DomainSplit:
    """``n`` volumes of 8^3 independent voxels, each foreground with probability ``prior``."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, 8, 8, 8, generator=g) < prior).long()
    volumes = (MU * labels.float() + SIGMA * torch.randn(n, 8, 8, 8, generator=g))[:, None]
    return DomainSplit(volumes=volumes, labels=labels, meta=[{"class": "voxel"}] * n)


@pytest.mark.parametrize("target_prior", [0.02, 0.05, 0.25])
def test_em_recovers_the_target_prior_from_exact_posteriors(target_prior: float) -> None:
    source_prior = 0.05
    model, target = BayesUnderPrior(source_prior), _voxels(300, target_prior, seed=1)
    p_fg = torch.softmax(model(target.volumes), dim=1)[:, 1]
    estimate, iterations, converged = em_foreground_prior(p_fg, source_prior)
    assert converged and iterations > 1
    assert estimate == pytest.approx(target_prior, rel=0.08)
    # the mean posterior alone (EM's first step) is pulled towards the source prior: EM is what corrects it
    if target_prior != source_prior:
        assert abs(float(p_fg.mean()) - target_prior) > 2 * abs(estimate - target_prior)


def test_em_keeps_a_prior_the_posteriors_already_carry() -> None:
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    estimate, iterations, converged = em_foreground_prior(p, 0.25)
    assert estimate == pytest.approx(0.25, abs=1e-12) and iterations == 1 and converged


@pytest.mark.parametrize("source_soft", [0.0, 1.0, -0.1])
def test_em_refuses_a_source_prior_outside_zero_and_one(source_soft: float) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        em_foreground_prior(torch.tensor([0.2]), source_soft)


def test_the_estimated_readout_follows_a_target_more_crowded_than_the_source() -> None:
    source_prior, target_prior = 0.05, 0.25
    model = BayesUnderPrior(source_prior)
    source_val, target_train = _voxels(200, source_prior, seed=2), _voxels(200, target_prior, seed=3)
    target_test = _voxels(100, target_prior, seed=4)
    decision = calibrate_estimated_threshold(model, target_train.volumes, source_val.volumes, batch_size=50)
    assert decision.estimate is not None and decision.origin == "em estimate"
    assert decision.estimate.source_soft == pytest.approx(source_prior, rel=0.05)  # the model is calibrated
    assert decision.estimate.estimate == pytest.approx(target_prior, rel=0.08)
    assert decision.target_fraction == decision.estimate.estimate
    assert decision.argmax_fraction < 0.6 * target_prior  # argmax keeps the source's occupancy
    record = decision.record()
    assert record["origin"] == "em estimate" and record["estimate"]["method"] == "em"
    argmax = evaluate_predictor(model, target_test, num_classes=2, batch_size=50)["overall"]["dice_fg"]
    estimated = evaluate_predictor(model, target_test, num_classes=2, batch_size=50,
                                   decision=decision)["overall"]["dice_fg"]
    assert estimated > argmax + 0.05, (argmax, estimated)


def test_on_source_like_data_the_estimate_stays_near_the_source() -> None:
    model = BayesUnderPrior(0.05)
    decision = calibrate_estimated_threshold(model, _voxels(200, 0.05, seed=5).volumes,
                                             _voxels(200, 0.05, seed=6).volumes, batch_size=50)
    assert decision.estimate is not None
    assert decision.estimate.estimate == pytest.approx(0.05, rel=0.1)


def test_bias_corrected_temperature_undoes_a_known_distortion() -> None:
    g = torch.Generator().manual_seed(7)
    true_logit = 2.0 * torch.randn(400_000, generator=g, dtype=torch.float64) - 3.0
    labels = torch.rand(400_000, generator=g, dtype=torch.float64) < torch.sigmoid(true_logit)
    distorted = torch.sigmoid(2.0 * true_logit - 1.0)  # over-confident and biased: logit = 2 z - 1
    scale, bias = fit_bias_corrected_temperature(distorted, labels)
    assert scale == pytest.approx(0.5, abs=0.02) and bias == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="all foreground or all background"):
        fit_bias_corrected_temperature(distorted[:10], torch.zeros(10, dtype=torch.bool))


def test_calibrated_em_recovers_the_prior_an_over_confident_network_hides() -> None:
    source_prior, target_prior = 0.05, 0.25
    model = BayesUnderPrior(source_prior, sharpen=2.5, shift=-1.0)
    source_val, target_train = _voxels(200, source_prior, seed=8), _voxels(200, target_prior, seed=9)
    plain = calibrate_estimated_threshold(model, target_train.volumes, source_val.volumes, source_val.labels,
                                          batch_size=50)  # em reads no labels
    calibrated = calibrate_estimated_threshold(model, target_train.volumes, source_val.volumes,
                                               source_val.labels, method="em_calibrated", batch_size=50)
    assert plain.estimate is not None and calibrated.estimate is not None
    assert calibrated.estimate.method == "em_calibrated"
    assert calibrated.estimate.scale == pytest.approx(1 / 2.5, rel=0.05)
    assert calibrated.estimate.source_soft == pytest.approx(source_prior, rel=0.05)
    assert calibrated.estimate.estimate == pytest.approx(target_prior, rel=0.08)
    assert abs(plain.estimate.estimate - target_prior) > 3 * abs(calibrated.estimate.estimate - target_prior)
    with pytest.raises(ValueError, match="needs the held-out source labels"):
        calibrate_estimated_threshold(model, target_train.volumes, source_val.volumes, method="em_calibrated",
                                      batch_size=50)


def test_prior_estimate_and_another_prior_are_refused_together(tiny_dataset: Path) -> None:
    for other in ({"fg_prior": [0.1, 0.2]}, {"source_prior": True}):
        data = tiny_run_dict(tiny_dataset)
        data["evaluation"].update(other, prior_estimate="em")
        with pytest.raises(ConfigError, match="prior_estimate = 'em' and"):
            run_config_from_dict(data)
    data = tiny_run_dict(tiny_dataset)
    data["evaluation"]["prior_estimate"] = "bbse"
    with pytest.raises(ConfigError, match="prior_estimate"):
        run_config_from_dict(data)


def test_evaluation_the_engine_and_the_command_line_read_out_at_the_estimate(
        tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    data = tiny_run_dict(tiny_dataset, steps=2)
    train_and_evaluate(run_config_from_dict(data), out)
    result = evaluate_run(out, split="test", checkpoint="last", prior_estimate="em")
    decision = result["decision"]
    assert decision["origin"] == "em estimate" and decision["rule"] == "prior_threshold"
    estimate = decision["estimate"]
    assert 0 < estimate["source_soft"] < 1 and estimate["converged"]
    assert decision["fg_prior"] == [estimate["estimate"], estimate["estimate"]]
    assert (out / "eval_test_last_fgprior-em.json").is_file()
    data["evaluation"]["prior_estimate"] = "em"
    engine = BenchEngine()
    scored = engine.evaluate(data, out, out / "last.pt", ComponentRef("identity"))
    assert scored.dice == pytest.approx(result["overall"]["dice_fg"])
    assert scored.decision is not None and scored.decision["estimate"] == pytest.approx(estimate)
    assert main(["evaluate", str(out), "--checkpoint", "last", "--prior-estimate", "em"]) == 0
    assert "prior estimate (em)" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--checkpoint", "last", "--prior-estimate", "em_calibrated"]) == 0
    assert "prior estimate (em_calibrated)" in capsys.readouterr().out
    calibrated = json.loads((out / "eval_test_last_fgprior-em_calibrated.json").read_text())["decision"]
    assert calibrated["estimate"]["scale"] != 1.0 and calibrated["estimate"]["method"] == "em_calibrated"
    again = json.loads((out / "eval_test_last_fgprior-em.json").read_text())
    assert again["overall"] == result["overall"]
    # turning the estimate off for one evaluation writes its own file, never over the run's readout
    assert main(["evaluate", str(out), "--checkpoint", "last", "--prior-estimate", "none"]) == 0
    off = json.loads((out / "eval_test_last_fgprior-none.json").read_text())
    assert off["decision"] == {"rule": "argmax"}
    both = ["--prior-estimate", "em", "--source-prior"]
    assert main(["evaluate", str(out), "--checkpoint", "last", *both]) == 2
    assert "--source-prior and --prior-estimate both set" in capsys.readouterr().err

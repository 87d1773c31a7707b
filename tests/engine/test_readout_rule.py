"""The one place that decides how a run is read out at test time (``voxuda.engine.decision.readout_rule`` and
``calibrate_readout``), shared by ``voxuda evaluate`` and the benchmark engine: which rule a run's config and
the command line's overrides give, and that only the splits a rule needs are loaded."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from tests.engine.test_prior_estimate import BayesUnderPrior, _voxels
from voxuda.engine.decision import ReadoutRule, ReadoutSplits, calibrate_readout, readout_rule
from voxuda.engine.run_config import EvaluationConfig
from voxuda.errors import ConfigError


@pytest.mark.parametrize(("config", "overrides", "expected"), [
    ({}, {}, ReadoutRule()),
    ({"prior_estimate": "em"}, {}, ReadoutRule(estimator="em")),
    ({"source_prior": True}, {}, ReadoutRule(source_prior=True)),
    ({"fg_prior": (0.01, 0.2)}, {}, ReadoutRule(fg_prior=(0.01, 0.2))),
    # one override replaces the run's rule
    ({"prior_estimate": "em"}, {"fg_prior": (0.03, 0.15)}, ReadoutRule(fg_prior=(0.03, 0.15))),
    ({"fg_prior": (0.01, 0.2)}, {"source_prior": True},
     ReadoutRule(source_prior=True, source_option="--source-prior")),
    ({"source_prior": True}, {"prior_estimate": "em_calibrated"}, ReadoutRule(estimator="em_calibrated")),
    # "none" turns every prior off; source_prior = False only the source fraction
    ({"fg_prior": (0.01, 0.2)}, {"prior_estimate": "none"}, ReadoutRule()),
    ({"prior_estimate": "em"}, {"prior_estimate": "none"}, ReadoutRule()),
    ({"source_prior": True}, {"source_prior": False}, ReadoutRule()),
    ({"fg_prior": (0.01, 0.2)}, {"source_prior": False}, ReadoutRule(fg_prior=(0.01, 0.2))),
])
def test_the_run_config_and_one_override_give_one_rule(config: dict, overrides: dict,
                                                      expected: ReadoutRule) -> None:
    assert readout_rule(EvaluationConfig(**config), **overrides) == expected


@pytest.mark.parametrize(("overrides", "named"), [
    ({"fg_prior": (0.01, 0.2), "source_prior": True}, "--fg-prior and --source-prior"),
    ({"source_prior": True, "prior_estimate": "em"}, "--source-prior and --prior-estimate"),
    ({"fg_prior": (0.2, 0.1)}, "--fg-prior 0.2 0.1"),
    ({"prior_estimate": "median"}, "--prior-estimate median"),
])
def test_conflicting_or_bad_overrides_are_refused_naming_the_option(overrides: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        readout_rule(EvaluationConfig(), **overrides)


class _Loads:
    """Split loaders that record which were called (each costs I/O in a real run)."""

    def __init__(self, target: Tensor, source_val: Tensor, source_val_labels: Tensor | None,
                 source_train_labels: Tensor | None) -> None:
        self.calls: list[str] = []
        self.target, self.source_val_volumes, self.source_val_labels = target, source_val, source_val_labels
        self.train_labels = source_train_labels

    def target_train(self) -> Tensor:
        self.calls.append("target_train")
        return self.target

    def source_val(self, with_labels: bool) -> tuple[Tensor, Tensor | None]:
        self.calls.append(f"source_val(labels={with_labels})")
        return self.source_val_volumes, self.source_val_labels if with_labels else None

    def source_train_labels(self) -> Tensor | None:
        self.calls.append("source_train_labels")
        return self.train_labels

    def splits(self) -> ReadoutSplits:
        return ReadoutSplits(target_train=self.target_train, source_val=self.source_val,
                             source_train_labels=self.source_train_labels)


@pytest.fixture
def loads() -> _Loads:
    source, target = _voxels(60, 0.05, seed=11), _voxels(60, 0.25, seed=12)
    return _Loads(target.volumes, source.volumes, source.labels, source.labels)


@pytest.mark.parametrize(("rule", "calls", "origin"), [
    (ReadoutRule(), [], None),
    (ReadoutRule(fg_prior=(0.2, 0.3)), ["target_train"], "user range"),
    (ReadoutRule(source_prior=True), ["source_train_labels", "target_train"], "source fraction"),
    (ReadoutRule(estimator="em"), ["source_val(labels=False)", "target_train"], "em estimate"),
    (ReadoutRule(estimator="em_calibrated"), ["source_val(labels=True)", "target_train"], "em estimate"),
])
def test_a_rule_loads_only_the_splits_it_needs_and_aims_where_it_says(
        loads: _Loads, rule: ReadoutRule, calls: list[str], origin: str | None) -> None:
    model = BayesUnderPrior(0.05)
    decision = calibrate_readout(model, rule, loads.splits(), batch_size=30)
    assert loads.calls == calls
    if origin is None:
        assert decision is None
        return
    assert decision is not None and decision.origin == origin
    if rule.source_prior:  # the source train split's own fraction, from its labels
        assert loads.train_labels is not None
        fraction = float((loads.train_labels > 0).float().mean())
        assert decision.target_fraction == pytest.approx(fraction)
    if rule.estimator != "none":  # the target is drawn at 0.25: EM on exact posteriors finds it
        assert decision.estimate is not None and decision.estimate.method == rule.estimator
        assert decision.target_fraction == pytest.approx(0.25, rel=0.15)


def test_the_source_fraction_without_source_labels_names_the_option() -> None:
    splits = ReadoutSplits(target_train=lambda: torch.zeros(1, 1, 4, 4, 4),
                           source_val=lambda _labels: (torch.zeros(1, 1, 4, 4, 4), None),
                           source_train_labels=lambda: None)
    with pytest.raises(ConfigError, match="--source-prior: the source train split has no labels"):
        rule = ReadoutRule(source_prior=True, source_option="--source-prior")
        calibrate_readout(BayesUnderPrior(0.05), rule, splits, batch_size=1)

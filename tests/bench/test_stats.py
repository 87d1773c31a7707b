"""Paired statistics: the interval code against a hand-computed example and known t quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voxuda.bench.stats import (
    PairedInterval,
    bootstrap_interval,
    paired_differences,
    paired_interval,
    paired_t_interval,
    t_quantile,
)


def test_hand_computed_example() -> None:
    """diffs [0.02, 0.05, 0.03]: mean 0.0333, sd 0.01528, t_{0.975,2} = 4.3027, half-width
    4.3027 * 0.01528 / sqrt(3) = 0.03795 -> [-0.0046, 0.0713]: contains 0, not significant."""
    interval = paired_t_interval([0.02, 0.05, 0.03])
    assert interval is not None
    assert interval.n == 3
    assert interval.mean == pytest.approx(0.033333, abs=1e-6)
    assert interval.sd == pytest.approx(0.015275, abs=1e-6)
    assert interval.high - interval.mean == pytest.approx(0.03795, abs=1e-5)
    assert interval.low == pytest.approx(-0.0046, abs=1e-4)
    assert interval.high == pytest.approx(0.0713, abs=1e-4)
    assert not interval.significant
    assert interval.verdict() == "no significant difference"
    assert interval.text() == "+0.033 [-0.005, +0.071] n.s."


def test_interval_excluding_zero_is_significant() -> None:
    """diffs [0.10, 0.10, 0.14]: mean 0.1133, sd 0.02309, half 4.3027 * 0.02309 / sqrt 3 = 0.0574."""
    interval = paired_t_interval([0.10, 0.10, 0.14])
    assert interval is not None and interval.significant and interval.verdict() == "better"
    assert interval.low == pytest.approx(0.0560, abs=1e-4)
    assert "n.s." not in interval.text()
    worse = paired_t_interval([-0.10, -0.10, -0.14])
    assert worse is not None and worse.verdict() == "worse"


@pytest.mark.parametrize(("dof", "value"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281),
                                             (30, 2.0423)])
def test_t_quantiles_match_tables(dof: int, value: float) -> None:
    assert t_quantile(0.975, dof) == pytest.approx(value, abs=1e-4)


def test_one_seed_is_untested_and_none_is_nothing() -> None:
    one = paired_t_interval([0.04])
    assert one is not None and not one.tested and not one.significant
    assert one.text() == "+0.040 (1 seed: untested)"
    assert paired_t_interval([]) is None
    assert paired_t_interval([math.nan]) is None


def test_identical_rows_say_so() -> None:
    same = paired_t_interval([0.0, 0.0, 0.0])
    assert same is not None and same.identical and not same.significant
    assert same.text() == "+0.000 (identical on every seed)"


def test_pairing_matches_keys() -> None:
    a = {0: 0.52, 1: 0.55, 2: 0.53, 3: 0.9}
    b = {0: 0.50, 1: 0.50, 2: 0.50}
    assert paired_differences(a, b) == pytest.approx([0.02, 0.05, 0.03])
    paired, direct = paired_interval(a, b), paired_t_interval([0.02, 0.05, 0.03])
    assert paired is not None and direct is not None and paired.n == 3
    assert (paired.mean, paired.low, paired.high) == pytest.approx((direct.mean, direct.low, direct.high))
    assert paired_interval(a, {}) is None


def test_round_trip_through_json() -> None:
    interval = paired_t_interval([0.02, 0.05, 0.03])
    assert interval is not None
    assert PairedInterval.from_dict(interval.to_dict()) == interval
    one = paired_t_interval([0.1])
    assert one is not None
    data = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in one.to_dict().items()}
    back = PairedInterval.from_dict(data)
    assert back.n == 1 and math.isnan(back.low)


def test_bootstrap_is_reproducible_and_close_to_t_for_many_seeds() -> None:
    rng = np.random.default_rng(1)
    diffs = list(rng.normal(0.02, 0.05, size=200))
    boot = bootstrap_interval(diffs)
    t = paired_t_interval(diffs)
    assert boot is not None and t is not None
    assert boot == bootstrap_interval(diffs)  # seeded
    assert boot.low == pytest.approx(t.low, abs=0.002) and boot.high == pytest.approx(t.high, abs=0.002)
    constant = bootstrap_interval([0.03, 0.03, 0.03])
    assert constant is not None
    assert constant.low == pytest.approx(0.03) and constant.high == pytest.approx(0.03)

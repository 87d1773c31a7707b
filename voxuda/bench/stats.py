"""Paired statistics over seeds: is a method's Dice different from its control's, seed by seed?

Every adapted run shares its warm-start parent's seed and weights, and the control (``source_only_cont``)
continues from the same parent, so the honest comparison is the **paired** per-seed difference
``method - control`` (matched by seed and test-time input), not two means against an across-seed spread.
With ``n`` seeds the 95 % interval of the mean difference is ``mean ± t_{0.975, n-1} * sd / sqrt(n)``
(Student t with ``n - 1`` degrees of freedom, the standard paired t interval); an interval that contains 0
is "not significant". One seed gives a difference but no interval ("1 seed: untested"). A percentile
bootstrap of the mean is provided as a cross-check; with 3-5 seeds it is narrower than the t interval
(it ignores the uncertainty of the sd), which is why the tables use the t interval.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import attrs
import numpy as np

#: Confidence level of every interval in the tables.
LEVEL = 0.95

#: the key of paired results (a seed): Mapping is invariant in its key, so a dict[int, float] needs a TypeVar
K = TypeVar("K", bound=Hashable)


@attrs.frozen
class PairedInterval:
    """Mean of paired differences with its two-sided interval (NaN bounds when ``n < 2``)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    level: float = LEVEL
    method: str = "t"

    @property
    def tested(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def identical(self) -> bool:
        """Every paired difference is exactly 0: the two rows are the same predictions by construction."""
        return self.tested and self.mean == 0 and self.sd == 0

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0 (never for an untested difference)."""
        return self.tested and (self.low > 0 or self.high < 0)

    def verdict(self) -> str:
        """``better``, ``worse``, ``no significant difference``, ``identical on every seed`` or
        ``1 seed: untested``."""
        if not self.tested:
            return f"{self.n} seed: untested" if self.n == 1 else "untested"
        if self.identical:
            return "identical on every seed"
        if not self.significant:
            return "no significant difference"
        return "better" if self.mean > 0 else "worse"

    def text(self, digits: int = 3) -> str:
        """A table cell: ``+0.033 [-0.005, +0.071] n.s.``, or ``+0.012 (1 seed: untested)``."""
        mean = f"{self.mean:+.{digits}f}"
        if not self.tested or self.identical:
            return f"{mean} ({self.verdict()})"
        cell = f"{mean} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return cell if self.significant else cell + " n.s."

    def to_dict(self) -> dict[str, float | int | str | bool]:
        return {**attrs.asdict(self), "significant": self.significant}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PairedInterval:
        known = {f.name for f in attrs.fields(cls)}

        def num(v: object) -> object:
            return math.nan if v is None else v

        return cls(**{k: num(v) for k, v in data.items() if k in known})  # type: ignore[arg-type]


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom (scipy is a voxuda dependency)."""
    from scipy.stats import t

    return float(t.ppf(p, dof))


def paired_t_interval(diffs: Sequence[float], level: float = LEVEL) -> PairedInterval | None:
    """Mean of ``diffs`` and its Student-t interval with ``n - 1`` dof; ``None`` for no differences."""
    values = [float(d) for d in diffs if d is not None and math.isfinite(float(d))]
    n = len(values)
    if n == 0:
        return None
    mean = float(np.mean(values))
    if n == 1:
        return PairedInterval(n=1, mean=mean, sd=math.nan, low=math.nan, high=math.nan, level=level)
    sd = float(np.std(values, ddof=1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return PairedInterval(n=n, mean=mean, sd=sd, low=mean - half, high=mean + half, level=level)


def bootstrap_interval(diffs: Sequence[float], level: float = LEVEL, *, resamples: int = 10_000,
                       seed: int = 0) -> PairedInterval | None:
    """Percentile bootstrap interval of the mean of ``diffs`` (seeded, so a report is reproducible)."""
    values = np.asarray([float(d) for d in diffs if d is not None and math.isfinite(float(d))])
    n = len(values)
    if n == 0:
        return None
    mean = float(values.mean())
    if n == 1:
        return PairedInterval(n=1, mean=mean, sd=math.nan, low=math.nan, high=math.nan, level=level,
                              method="bootstrap")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return PairedInterval(n=n, mean=mean, sd=float(values.std(ddof=1)), low=float(low), high=float(high),
                          level=level, method="bootstrap")


def paired_differences(a: Mapping[K, float], b: Mapping[K, float]) -> list[float]:
    """``a[k] - b[k]`` for every key in both (keys are e.g. seeds), in sorted key order."""
    keys = sorted(set(a) & set(b))  # type: ignore[type-var]  # seeds: ints
    return [float(a[k]) - float(b[k]) for k in keys]


def paired_interval(a: Mapping[K, float], b: Mapping[K, float],
                    level: float = LEVEL) -> PairedInterval | None:
    """The paired t interval of ``a - b`` over their shared keys (``None`` when none are shared)."""
    return paired_t_interval(paired_differences(a, b), level)


__all__ = ["LEVEL", "PairedInterval", "bootstrap_interval", "paired_differences", "paired_interval",
           "paired_t_interval", "t_quantile"]

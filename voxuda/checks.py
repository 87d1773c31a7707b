"""attrs validators for component configs, shared by the built-ins and by plugin packages.

One definition so that every config rejects bad numbers the same way and with the same words (the CLI
prints the message as the one-line error).  Comparisons are written ``not value >= 0`` rather than
``value < 0`` so that NaN, which compares false both ways, is rejected instead of slipping through; an
infinite weight, rate or size is rejected too (``lr = inf`` would pass ``> 0`` and diverge steps later).

Plugin authors: ``from voxuda.checks import non_negative`` and pass it as an attrs ``validator``. Choices are
``Literal`` types (the config loader checks them); :func:`one_of` is for a choice a ``Literal`` cannot
express. This is the only module that defines validators: components import them from here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "at_least_one",
    "each_non_negative",
    "fraction_below_one",
    "non_negative",
    "non_negative_int",
    "non_negative_or_none",
    "one_of",
    "positive",
    "positive_or_none",
    "prior_range_problem",
    "unit_interval",
    "valid_prior_range",
    "widths",
]

Validator = Callable[[object, Any, Any], None]


def _number(attribute: Any, value: Any) -> None:
    """Reject what is not a real number (a string, a bool) with the field's name, not a TypeError later."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{attribute.name} must be a number, got {value!r}")


def _finite(attribute: Any, value: float) -> None:
    if value == math.inf:
        raise ValueError(f"{attribute.name} must be finite, got {value!r}")


def non_negative(_instance: object, attribute: Any, value: float) -> None:
    """Weights, step counts, standard deviations: zero allowed, infinity not."""
    _number(attribute, value)
    if not value >= 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")
    _finite(attribute, value)


def positive(_instance: object, attribute: Any, value: float) -> None:
    """Learning rates, sigmas, sizes: strictly above zero, and finite."""
    _number(attribute, value)
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")
    _finite(attribute, value)


def positive_or_none(instance: object, attribute: Any, value: float | None) -> None:
    """An optional positive number (``None`` = "not set", e.g. a sigma replaced by an SNR)."""
    if value is not None:
        positive(instance, attribute, value)


def non_negative_or_none(instance: object, attribute: Any, value: float | None) -> None:
    """An optional non-negative number (``None`` = "derive it", e.g. NGM's cube side from its rate)."""
    if value is not None:
        non_negative(instance, attribute, value)


def non_negative_int(_instance: object, attribute: Any, value: Any) -> None:
    """Radii and counts that may be zero: an ``int`` (not a bool or a float) ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


def fraction_below_one(_instance: object, attribute: Any, value: float) -> None:
    """A share of something that cannot be all of it, e.g. NGM's filter rate: ``0 <= value < 1``."""
    _number(attribute, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{attribute.name} must be a fraction in [0, 1), got {value!r}")


def each_non_negative(_instance: object, attribute: Any, value: Iterable[float]) -> None:
    """Per-item weights (e.g. one per feature tap): none negative or NaN."""
    if any(not v >= 0 for v in value):
        raise ValueError(f"{attribute.name} must not contain negative weights, got {value!r}")


def widths(_instance: object, attribute: Any, value: Iterable[int]) -> None:
    """Channel widths of an encoder: at least two levels, each at least one channel."""
    items = tuple(value)
    if len(items) < 2 or any(int(w) < 1 for w in items):
        raise ValueError(f"{attribute.name} needs at least two positive widths, got {value!r}")


def one_of(*choices: object) -> Validator:
    """A validator for a choice among values that a ``Literal`` annotation cannot express."""

    def check(_instance: object, attribute: Any, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {choices}, got {value!r}")

    return check


def at_least_one(_instance: object, attribute: Any, value: int) -> None:
    """Counts such as samples, layers or classes."""
    if not value >= 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value!r}")


def unit_interval(_instance: object, attribute: Any, value: float) -> None:
    """Probabilities, momenta, fractions and thresholds."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must lie in [0, 1], got {value!r}")


def prior_range_problem(value: Sequence[float]) -> str | None:
    """What is wrong with a foreground-fraction range (``fg_prior``), or ``None``: it must be empty (the
    option's default behaviour) or ``[lo, hi]`` within [0, 1] with ``hi > 0``. Shared by the config
    validator below and the command-line checks of ``evaluate`` and ``segment``."""
    if len(value) == 0:
        return None
    if len(value) != 2 or not 0.0 <= value[0] <= value[1] <= 1.0 or not value[1] > 0.0:
        return "must be [] or [lo, hi] with 0 <= lo <= hi <= 1 and hi > 0 (e.g. [0.03, 0.15])"
    return None


def valid_prior_range(_instance: object, attribute: Any, value: Sequence[float]) -> None:
    """attrs validator of an ``fg_prior`` field (:func:`prior_range_problem`)."""
    problem = prior_range_problem(value)
    if problem is not None:
        raise ValueError(f"{attribute.name} {problem}, got {list(value)!r}")

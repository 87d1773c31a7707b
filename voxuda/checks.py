"""attrs validators for component configs, shared by the built-ins and by plugin packages.

One definition so that every config rejects bad numbers the same way and with the same words (the CLI
prints the message as the one-line error).  Comparisons are written ``not value >= 0`` rather than
``value < 0`` so that NaN, which compares false both ways, is rejected instead of slipping through; an
infinite weight, rate or size is rejected too (``lr = inf`` would pass ``> 0`` and diverge steps later).

Plugin authors: ``from voxuda.checks import non_negative`` and pass it as an attrs ``validator``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["at_least_one", "non_negative", "positive", "unit_interval"]


def _finite(attribute: Any, value: float) -> None:
    if value == math.inf:
        raise ValueError(f"{attribute.name} must be finite, got {value!r}")


def non_negative(_instance: object, attribute: Any, value: float) -> None:
    """Weights, step counts, standard deviations: zero allowed, infinity not."""
    if not value >= 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")
    _finite(attribute, value)


def positive(_instance: object, attribute: Any, value: float) -> None:
    """Learning rates, sigmas, sizes: strictly above zero, and finite."""
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")
    _finite(attribute, value)


def at_least_one(_instance: object, attribute: Any, value: int) -> None:
    """Counts such as samples, layers or classes."""
    if not value >= 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value!r}")


def unit_interval(_instance: object, attribute: Any, value: float) -> None:
    """Probabilities, momenta, fractions and thresholds."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must lie in [0, 1], got {value!r}")

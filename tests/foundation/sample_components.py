"""A tiny component used by the plugin tests (no torch needed)."""

from __future__ import annotations

import attrs

from voxuda.config import help_field


@attrs.define(kw_only=True)
class ScaleConfig:
    """Multiply the input by a factor."""

    factor: float = help_field(2.0, help="the factor")


class Scale:
    def __init__(self, config: ScaleConfig) -> None:
        self.config = config

    def __call__(self, x: float) -> float:
        return x * self.config.factor

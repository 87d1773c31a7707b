"""Denoisers applied to target volumes in front of the teacher (callables on (N, C, D, H, W) tensors).

Also the test-time input denoiser that evaluation, the benchmark, ``voxuda segment`` and the trainer's
validation apply to a model's input (:func:`build_input_denoiser`): built here, beside the denoisers, so that
none of them reaches up into the methods for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from voxuda.config import ComponentRef, apply_overrides, component_ref
from voxuda.denoisers.basic import GaussianDenoiser, GaussianDenoiserConfig, Identity, IdentityConfig
from voxuda.denoisers.bilateral import (
    BilateralDenoiser,
    BilateralDenoiserConfig,
    ImprovedBilateralDenoiser,
    ImprovedBilateralDenoiserConfig,
)


def input_denoiser_ref(
    ref: ComponentRef | str | Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> ComponentRef:
    """``ref`` with parameter ``overrides`` applied (``{"sigma": 2.0}``: ``--set input_denoiser.sigma=2``
    after :func:`voxuda.config.component_overrides`); a ``name`` override picks another denoiser."""
    ref = component_ref(ref)
    return component_ref(apply_overrides(ref.to_dict(), overrides)) if overrides else ref


def build_input_denoiser(
    ref: ComponentRef | str | Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> Callable[[Tensor], Tensor] | None:
    """The test-time denoiser on a model's input: ``None`` for plain ``identity`` (no parameters), so that
    callers skip the input transform altogether instead of cloning every batch; else the registered
    denoiser built from ``ref`` and ``overrides`` (:func:`input_denoiser_ref`)."""
    ref = input_denoiser_ref(ref, overrides)
    if ref.name == "identity" and not ref.params:
        return None
    from voxuda.api import build_component

    denoiser: Callable[[Tensor], Tensor] = build_component("denoiser", ref)
    return denoiser


__all__ = [
    "BilateralDenoiser",
    "BilateralDenoiserConfig",
    "GaussianDenoiser",
    "GaussianDenoiserConfig",
    "Identity",
    "IdentityConfig",
    "ImprovedBilateralDenoiser",
    "ImprovedBilateralDenoiserConfig",
    "build_input_denoiser",
    "input_denoiser_ref",
]

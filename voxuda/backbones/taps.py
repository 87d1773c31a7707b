"""Reading a backbone's feature taps: which taps it has, how many channels one carries, which one a config
means.

A backbone's ``forward`` returns ``(logits, {tap: features})``; methods that look at features (DANN's and
Vox-UDA's discriminators, Vox-UDA's consistency, the CORAL plugin) name taps in their configs. These helpers
live with the backbones rather than with any one method, so that a method reading taps does not import a
sibling method to do it. Backbones declare ``tap_names`` (the natural inputs of feature losses, shallow to
deep), ``tap_channels`` (channels per tap; may list more taps than ``tap_names``) and ``deepest_tap``;
plugin backbones that omit ``tap_channels`` are measured with one dry forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from voxuda.errors import ConfigError


def tap_channels(backbone: nn.Module, tap: str, in_channels: int) -> int:
    """Channels of a backbone tap: from ``backbone.tap_channels`` or, for plugins without it, a dry run."""
    known = getattr(backbone, "tap_channels", None)
    if isinstance(known, dict) and tap in known:
        return int(known[tap])
    size = max(int(getattr(backbone, "divisor", 16)), 8)
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        _, features = backbone(torch.zeros(1, in_channels, size, size, size))
    backbone.train(was_training)
    if tap not in features:
        raise KeyError(tap)
    return int(features[tap].shape[1])


def known_taps(backbone: nn.Module) -> tuple[str, ...]:
    """Every tap name a backbone declares (``tap_names`` and the keys of ``tap_channels``)."""
    names = tuple(getattr(backbone, "tap_names", ())) + tuple(getattr(backbone, "tap_channels", {}) or ())
    return tuple(dict.fromkeys(names))


def resolve_tap(backbone: nn.Module, tap: str, key: str = "method.tap") -> str:
    """The configured tap, or the backbone's ``deepest_tap`` when empty; checked against the known taps.

    ``key`` is the config key named in the error, so the message points at the option to fix.
    """
    name = tap or getattr(backbone, "deepest_tap", "")
    known = known_taps(backbone)
    if not name or (known and name not in known):
        raise ConfigError(
            f"{key}: backbone {type(backbone).__name__} has no tap {name!r} (taps: {', '.join(known)})"
        )
    return name


def resolve_taps(backbone: nn.Module, taps: tuple[str, ...], key: str) -> tuple[str, ...]:
    """The configured taps, or the backbone's ``tap_names`` when none are given; each checked by
    :func:`resolve_tap`. A backbone that names no taps must be given them (``key`` says where)."""
    chosen = tuple(taps) or tuple(getattr(backbone, "tap_names", ()))
    if not chosen:
        raise ConfigError(f"{key}: backbone {type(backbone).__name__} names no taps; list them")
    return tuple(resolve_tap(backbone, tap, key) for tap in chosen)


__all__ = ["known_taps", "resolve_tap", "resolve_taps", "tap_channels"]

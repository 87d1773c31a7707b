"""Reading a backbone's feature taps: which taps it has, how many channels one carries, which one a config
means.

A backbone's ``forward`` returns ``(logits, {tap: features})``; methods that look at features (DANN's and
Vox-UDA's discriminators, Vox-UDA's consistency, the CORAL plugin) name taps in their configs. These helpers
live with the backbones rather than with any one method, so that a method reading taps does not import a
sibling method to do it. What a backbone declares (``tap_names``, ``tap_channels``, ``deepest_tap``) is the
:class:`voxuda.protocols.Backbone3D` contract, checked when the backbone is built, so it is read directly.
"""

from __future__ import annotations

from voxuda.errors import ConfigError
from voxuda.protocols import Backbone3D


def tap_channels(backbone: Backbone3D, tap: str) -> int:
    """Channels of a backbone tap, as the backbone declares them (``tap_channels`` covers every tap that
    :func:`resolve_tap` accepts)."""
    return int(backbone.tap_channels[tap])


def known_taps(backbone: Backbone3D) -> tuple[str, ...]:
    """Every tap name a backbone declares (``tap_names`` and the keys of ``tap_channels``)."""
    return tuple(dict.fromkeys((*backbone.tap_names, *backbone.tap_channels)))


def resolve_tap(backbone: Backbone3D, tap: str, key: str = "method.tap") -> str:
    """The configured tap, or the backbone's ``deepest_tap`` when empty; checked against the known taps.

    ``key`` is the config key named in the error, so the message points at the option to fix.
    """
    name = tap or backbone.deepest_tap
    known = known_taps(backbone)
    if not name or name not in known:
        raise ConfigError(
            f"{key}: backbone {type(backbone).__name__} has no tap {name!r} (taps: {', '.join(known)})"
        )
    return name


def resolve_taps(backbone: Backbone3D, taps: tuple[str, ...], key: str) -> tuple[str, ...]:
    """The configured taps, or the backbone's ``tap_names`` when none are given; each checked by
    :func:`resolve_tap`. A backbone that names no taps must be given them (``key`` says where)."""
    chosen = tuple(taps) or tuple(backbone.tap_names)
    if not chosen:
        raise ConfigError(f"{key}: backbone {type(backbone).__name__} names no taps; list them")
    return tuple(resolve_tap(backbone, tap, key) for tap in chosen)


__all__ = ["known_taps", "resolve_tap", "resolve_taps", "tap_channels"]

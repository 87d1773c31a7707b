"""The typed contracts of the component kinds that other code calls into: backbones, denoisers, noise models
and op backends.

Before these, each kind had its own contract style (``getattr`` with per-file defaults for backbones, bare
callables for denoisers, a base class for noise models, a Protocol for op backends), and a plugin component
that missed an attribute failed deep inside a training step. Now :func:`voxuda.api.build_component` checks
every built component of these kinds against its protocol (:func:`check_component`) and names the plugin
and the missing members; after that, callers read the members directly.

The protocols are structural (``typing.Protocol``): a plugin need not import or subclass anything from
voxuda to satisfy them. They are ``runtime_checkable``, so ``isinstance`` checks the members *exist*; what
they return is checked by mypy for voxuda's own code and by the parametrised smoke tests for every
registered component (tests/foundation/test_protocols.py).

Importing this module stays light (no torch): ``import voxuda`` must not pull torch in, and the registry
imports this module to check components.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from voxuda.errors import PluginError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor

    from voxuda.ops.backends.base import FilterParams
    from voxuda.registry import ComponentSpec


@runtime_checkable
class Backbone3D(Protocol):
    """A 3D segmentation network (an ``nn.Module``) returning ``(logits, {tap: features})``.

    Read-only properties here, so that a plain class or instance attribute of a narrower type (a ``dict``
    for ``tap_channels``) satisfies them.
    """

    @property
    def tap_names(self) -> tuple[str, ...]:
        """The natural inputs of feature losses (consistency, per-tap discriminators), shallow to deep."""
        ...

    @property
    def tap_channels(self) -> Mapping[str, int]:
        """Channels of every tap ``forward`` returns; covers ``tap_names`` and ``deepest_tap`` and may list
        more (the U-Net's ``decoder``). Discriminators are sized from it, without a dry forward pass."""
        ...

    @property
    def deepest_tap(self) -> str:
        """The most abstract tap: the default input of a pooled domain discriminator."""
        ...

    @property
    def divisor(self) -> int:
        """Spatial input sizes must be multiples of this (the network's total down-sampling; 1 for none)."""
        ...

    def __call__(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(N, C, D, H, W)`` -> logits ``(N, K, D, H, W)`` and the features of (at least) ``tap_names``."""
        ...


@runtime_checkable
class Denoiser(Protocol):
    """A fixed transform of volumes: ``(N, C, D, H, W)`` in, the same shape, dtype and device out.

    A denoiser that filters through an op backend also has ``op_backend`` (see :class:`RecordsOpBackend`);
    it is optional, because most denoisers use none.
    """

    def __call__(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class RecordsOpBackend(Protocol):
    """A component that records the registered op backend it filters on (``None`` before it has chosen),
    so that ``run.json`` says what ran rather than what the config asked for."""

    @property
    def op_backend(self) -> str | None: ...


@runtime_checkable
class NoiseModel(Protocol):
    """Perturbs source volumes, possibly from statistics fitted on target volumes (the NGM of Vox-UDA).

    :class:`voxuda.noise.base.NoiseModelBase` implements every member with "no fitting, no noise";
    subclassing it is the easy way to satisfy this protocol, not a requirement.
    """

    @property
    def needs_target(self) -> bool:
        """True if :meth:`fit` must see target volumes before the first call."""
        ...

    @property
    def n_fit_samples(self) -> int:
        """How many target volumes :meth:`fit` wants (0 when ``needs_target`` is False; with ``needs_target``,
        0 asks for every target-train volume once)."""
        ...

    @property
    def refit_every(self) -> int | None:
        """Re-estimate every K optimiser steps (K > 0), or ``None`` to fit once."""
        ...

    @property
    def fitted(self) -> bool:
        """Whether the statistics a call needs are there."""
        ...

    def fit(self, target_volumes: Tensor) -> None:
        """Estimate statistics from target volumes ``(N, C, D, H, W)``."""
        ...

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` plus noise drawn from ``generator``; the same shape."""
        ...

    def state(self) -> dict[str, Any]:
        """Plain, JSON-ready statistics for ``run.json`` and metrics."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`load_state_dict` needs to restore the fitted statistics (checkpoints, resume)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict`."""
        ...


@runtime_checkable
class MeasuresSource(Protocol):
    """A noise model that also measures the source (the colour and level of the noise it adds, or the
    premise that the source is the cleaner domain) before its first call; Vox-UDA calls it at train start."""

    def measure_source(self, source_volumes: Tensor) -> None: ...


@runtime_checkable
class OpBackend(Protocol):
    """A joint 3D bilateral implementation on (N, C, D, H, W) tensors with an explicit guide.

    Its name, rank (``priority``) and availability (``probe``) are not part of the object: they are what
    it was registered with (``voxuda_register_ops``), so that the registry is the one place they live.
    """

    def supports(self, x: Tensor, guide: Tensor, params: FilterParams) -> tuple[bool, str]:
        """Whether this backend can filter these particular inputs (device, dtype, channel count)."""
        ...

    def bilateral3d(self, x: Tensor, guide: Tensor, params: FilterParams) -> Tensor:
        """Filter validated, contiguous ``x`` (N, C, D, H, W) with weights from ``guide`` (N, G, D, H, W)."""
        ...


#: component kind -> the protocol a built component of that kind must satisfy (kinds not listed are free).
KIND_PROTOCOLS: dict[str, type] = {
    "backbone": Backbone3D,
    "denoiser": Denoiser,
    "noise_model": NoiseModel,
    "op": OpBackend,
}

_PROTOCOL_INTERNALS = frozenset({"_is_protocol", "_is_runtime_protocol"})


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The member names of a protocol class, in declaration order (``typing.get_protocol_members`` is
    Python 3.13+; this reads the class bodies the same way)."""
    names: list[str] = []
    for base in reversed(protocol.__mro__):
        if base is object or base is Protocol or not getattr(base, "_is_protocol", False):
            continue
        for name in (*getattr(base, "__annotations__", {}), *vars(base)):
            public = not name.startswith("_") or name == "__call__"
            if public and name not in _PROTOCOL_INTERNALS and name not in names:
                names.append(name)
    return tuple(names)


def missing_members(obj: object, protocol: type) -> list[str]:
    """Members of ``protocol`` that ``obj`` lacks (a method member must be callable)."""
    missing = []
    for name in protocol_members(protocol):
        if name == "__call__":
            if not callable(obj):
                missing.append(name)
            continue
        if not hasattr(obj, name):
            missing.append(name)
        elif callable(getattr(protocol, name, None)) and not callable(getattr(obj, name)):
            missing.append(name)  # declared as a method, present as data: not usable as the protocol says
    return missing


def _backbone_inconsistencies(obj: Backbone3D) -> list[str]:
    """Cheap checks a backbone's declared taps must pass for callers to read them without a dry run."""
    problems = []
    channels = obj.tap_channels
    if not isinstance(channels, Mapping):
        return [f"tap_channels is a {type(channels).__name__}, not a mapping of tap -> channels"]
    uncovered = [tap for tap in (*obj.tap_names, obj.deepest_tap) if tap and tap not in channels]
    if uncovered:
        problems.append(f"tap_channels lacks {', '.join(dict.fromkeys(uncovered))}")
    if not isinstance(obj.divisor, int) or obj.divisor < 1:
        problems.append(f"divisor is {obj.divisor!r}, not a positive int")
    return problems


def check_component(kind: str, obj: object, spec: ComponentSpec | None = None) -> None:
    """Raise :class:`~voxuda.errors.PluginError` if ``obj``, built as a ``kind``, does not satisfy the kind's
    protocol; the message names the component, its plugin and distribution, and what is missing."""
    protocol = KIND_PROTOCOLS.get(kind)
    if protocol is None:
        return
    missing = missing_members(obj, protocol)
    problems = [f"missing {', '.join(missing)}"] if missing else []
    if not missing and protocol is Backbone3D and isinstance(obj, Backbone3D):
        problems += _backbone_inconsistencies(obj)
    if not problems:
        return
    where = kind
    if spec is not None:
        where = (f"{kind} {spec.name!r} (plugin {spec.plugin!r}, distribution "
                 f"{spec.distribution or 'none'}, factory {spec.factory})")
    raise PluginError(f"{where} built a {type(obj).__name__!r} that does not satisfy {protocol.__name__}: "
                      f"{'; '.join(problems)}")


__all__ = [
    "KIND_PROTOCOLS",
    "Backbone3D",
    "Denoiser",
    "MeasuresSource",
    "NoiseModel",
    "OpBackend",
    "RecordsOpBackend",
    "check_component",
    "missing_members",
    "protocol_members",
]

"""pluggy hook specifications: one registration hook per component kind.

Each hook receives a ``register`` callback already bound to the calling plugin, so the registry always
knows which plugin (and which distribution) a component came from. Hooks only ever gain optional
arguments; they are never renamed or removed (see pluggy issues 170 and 178 for why renames break
installed plugins).

``register(name, *, factory, config=None, aliases=(), summary="", priority=0, probe=None)``:

- ``factory``: ``"module:attr"``. Called as ``factory(config_instance)`` when ``config`` is given,
  else ``factory()``.
- ``config``: ``"module:Class"`` of an attrs class, or ``None``.
- ``priority`` and ``probe`` matter for op backends: ``auto`` picks the available backend with the
  highest priority; ``probe`` is ``"module:function"`` returning ``(available, reason)``.

String references keep registration free of heavy imports: nothing is imported until a component is
built or described.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import pluggy

PROJECT_NAME = "voxuda"

#: Major version of the plugin API. A plugin declaring another major version is refused with a clear
#: error instead of failing later in an obscure way.
PLUGIN_API_VERSION = "1.0"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RegisterFn(Protocol):
    """The ``register`` callback every hook receives (bound to the calling plugin); see the module docstring
    for what each argument means. Plugins annotate their hooks' argument with it."""

    def __call__(
        self,
        name: str,
        *,
        factory: str,
        config: str | None = None,
        aliases: Iterable[str] = (),
        summary: str = "",
        priority: int = 0,
        probe: str | None = None,
    ) -> None: ...


@hookspec
def voxuda_register_backbones(register: RegisterFn) -> None:
    """Register 3D segmentation networks that return ``(logits, {tap_name: features})``."""


@hookspec
def voxuda_register_noise_models(register: RegisterFn) -> None:
    """Register noise models that perturb source volumes (e.g. the NGM of Vox-UDA)."""


@hookspec
def voxuda_register_denoisers(register: RegisterFn) -> None:
    """Register denoisers applied to volumes before a teacher or a model sees them."""


@hookspec
def voxuda_register_methods(register: RegisterFn) -> None:
    """Register adaptation methods (objects with ``training_step`` and ``predictor``)."""


@hookspec
def voxuda_register_ops(register: RegisterFn) -> None:
    """Register op backends (with ``priority`` and an availability ``probe``)."""


@hookspec
def voxuda_register_datasets(register: RegisterFn) -> None:
    """Register datasets of source/target subtomograms."""


@hookspec
def voxuda_register_validators(register: RegisterFn) -> None:
    """Register model-selection validators (label-free criteria that score a checkpoint)."""


@hookspec
def voxuda_register_aligners(register: RegisterFn) -> None:
    """Register label-free input aligners (``fit`` on unlabelled source/target, ``apply(x, domain)``)."""


#: hook name -> component kind it registers. The single source of truth for the kinds.
HOOK_KINDS: dict[str, str] = {
    "voxuda_register_backbones": "backbone",
    "voxuda_register_noise_models": "noise_model",
    "voxuda_register_denoisers": "denoiser",
    "voxuda_register_methods": "method",
    "voxuda_register_ops": "op",
    "voxuda_register_datasets": "dataset",
    "voxuda_register_validators": "validator",
    "voxuda_register_aligners": "aligner",
}

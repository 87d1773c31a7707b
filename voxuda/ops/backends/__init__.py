"""Backend discovery for the bilateral filter: the plugin registry is the only source.

Every ``op`` component registered through ``voxuda_register_ops`` (the built-ins in :mod:`voxuda.builtin`,
plugins through the same hook) is a backend.  Its rank is the *registered* ``priority`` and its
availability the registered ``probe`` (:meth:`voxuda.registry.ComponentSpec.is_available`), so that
``voxuda plugins`` and :func:`available_backends` show the same thing and ``auto`` follows it.

The ranked table (probe results included) is built once per registry load and each backend instance once
per table: a registry reload (:func:`voxuda.plugins.reset`, :func:`voxuda.plugins.add_plugin`) yields a
new registry object, and the table is rebuilt when it sees one.  Filtering therefore never scans the
registry or re-probes; denoisers go further and hold a :class:`BackendChoice`, resolved once per kind of
input instead of per call.

``"auto"`` takes the highest-priority backend that is available and supports the given inputs.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs
import torch

from voxuda.errors import PluginError, UnknownComponentError
from voxuda.ops.backends.base import FilterParams
from voxuda.plugins import get_registry
from voxuda.protocols import OpBackend, check_component
from voxuda.registry import ComponentSpec, Registry


@attrs.frozen
class BackendStatus:
    """One row of :func:`available_backends`: what exists, whether it runs here, and why not.

    ``priority`` is the registered one (what ``auto`` ranks by); ``source`` is the plugin that registered
    the backend (``"voxuda"`` for the built-ins).
    """

    name: str
    priority: int
    available: bool
    reason: str
    source: str

    @property
    def qualified_name(self) -> str:
        """``plugin:name``, as :attr:`voxuda.registry.ComponentSpec.qualified_name` spells it."""
        return f"{self.source}:{self.name}"


@attrs.frozen
class ResolvedBackend:
    """A backend chosen for some inputs: its registered name (what ``run.json`` records) and instance."""

    name: str
    backend: OpBackend


@attrs.define(eq=False)
class _Row:
    """One registered backend in the ranked table; its instance is built on first use, then kept."""

    spec: ComponentSpec
    available: bool
    reason: str
    instance: OpBackend | None = None

    def backend(self) -> OpBackend:
        """The backend instance, built once.  Built lazily so that a broken plugin backend only fails the
        calls that would use it, and fails them loudly, naming the plugin, instead of being skipped."""
        if self.instance is None:
            with _table_lock:  # two threads' first filters must not build two instances
                if self.instance is None:
                    self.instance = self._build()
        return self.instance

    def _build(self) -> OpBackend:
        spec = self.spec
        where = f"op backend {spec.qualified_name!r} ({spec.distribution or 'no distribution'})"
        factory = spec.load_factory()  # PluginError naming the factory when it does not import
        try:
            obj = factory()
        except Exception as exc:
            raise PluginError(f"{where}: {spec.factory}() failed: {type(exc).__name__}: {exc}") from exc
        check_component("op", obj, spec)  # PluginError naming the plugin and the missing methods
        return obj

    def status(self) -> BackendStatus:
        spec = self.spec
        return BackendStatus(spec.name, spec.priority, self.available, self.reason, spec.plugin)


@attrs.frozen
class _Table:
    """The backends of one registry load, highest registered priority first (ties by name)."""

    registry: Registry
    rows: tuple[_Row, ...]

    @classmethod
    def build(cls, registry: Registry) -> _Table:
        rows = []
        for spec in registry.list("op"):
            available, reason = spec.is_available()  # never raises: a failing probe is "probe failed: ..."
            rows.append(_Row(spec, available, reason))
        rows.sort(key=lambda r: (-r.spec.priority, r.spec.name))
        return cls(registry, tuple(rows))

    def row(self, name: str) -> _Row:
        """The row of ``name`` (bare, alias or ``plugin:name``), resolved the way the registry resolves."""
        try:
            spec = self.registry.resolve("op", name)
        except UnknownComponentError:
            known = sorted(r.spec.name for r in self.rows)
            raise ValueError(f"backend {name!r} is unknown; known: {known} or 'auto'") from None
        return next(r for r in self.rows if r.spec is spec)


_table: _Table | None = None
_table_lock = threading.Lock()


def _backend_table() -> _Table:
    """The ranked table of the current registry, rebuilt only when the registry was reloaded."""
    global _table
    registry = get_registry()
    table = _table
    if table is None or table.registry is not registry:
        with _table_lock:
            if _table is None or _table.registry is not registry:
                _table = _Table.build(registry)
            table = _table
    return table


def available_backends() -> list[BackendStatus]:
    """Every registered backend with its probe result, highest registered priority first."""
    return [row.status() for row in _backend_table().rows]


def _supports(row: _Row, x: torch.Tensor, guide: torch.Tensor, params: FilterParams) -> tuple[bool, str]:
    try:
        ok, reason = row.backend().supports(x, guide, params)
    except PluginError:
        raise
    except Exception as exc:  # re-raised, naming the plugin whose code failed
        raise PluginError(
            f"op backend {row.spec.qualified_name!r}: supports() raised {type(exc).__name__}: {exc}"
        ) from exc
    return bool(ok), str(reason)


def resolve_backend(
    name: str = "auto",
    x: torch.Tensor | None = None,
    guide: torch.Tensor | None = None,
    params: FilterParams | None = None,
) -> ResolvedBackend:
    """Return the backend called ``name``, or for "auto" the best one that can run these inputs.

    Without inputs, "auto" only checks availability.  An explicitly named backend that is unavailable or
    cannot handle the inputs raises ValueError with its reason instead of silently falling back.  Uses the
    cached table: no registry scan and no probe per call, only the candidates' ``supports``.
    """
    if not isinstance(name, str):
        raise ValueError(f"backend must be a string, got {name!r}")
    table = _backend_table()
    check_inputs = x is not None and guide is not None and params is not None
    if name != "auto":
        row = table.row(name)
        if not row.available:
            raise ValueError(f"backend {name!r} is not available: {row.reason}")
        if check_inputs:
            ok, reason = _supports(row, x, guide, params)  # type: ignore[arg-type]
            if not ok:
                raise ValueError(f"backend {name!r} cannot filter these inputs: {reason}")
        return ResolvedBackend(row.spec.name, row.backend())
    reasons = []
    for row in table.rows:
        if not row.available:
            reasons.append(f"{row.spec.name}: {row.reason}")
            continue
        if check_inputs:
            ok, reason = _supports(row, x, guide, params)  # type: ignore[arg-type]
            if not ok:
                reasons.append(f"{row.spec.name}: {reason}")
                continue
        return ResolvedBackend(row.spec.name, row.backend())
    why = "; ".join(reasons) or "no op backend is registered"
    raise ValueError(f"no bilateral backend can run these inputs: {why}")


class BackendChoice:
    """A backend request (``"auto"`` or a name) resolved once per kind of input, then remembered.

    Denoisers and the chunked filters hold one so that the choice is made when they are built or first
    used, not on every call (that used to scan the registry and probe every backend inside each training
    step).  A named backend is resolved at construction, so an unknown or unavailable one fails there.
    ``"auto"`` cannot be resolved before the inputs are seen (a CUDA-only backend must not be chosen for
    CPU tensors), so it resolves on the first call.

    The cache key is what a backend's ``supports`` decides on: device, dtypes, the shape without the batch
    size, the guide's channels, and the radius and spacing of the filter.  Sigma values are left out on
    purpose: the ``guide_std`` range scale gives every volume its own sigma_r, and no backend's choice
    depends on it.  A new key (a denoiser moved to the GPU, a chunk at a volume's edge) resolves again,
    once; :attr:`resolutions` counts them.
    """

    _MAX_KEYS = 64  # bounds the memory of a long-lived choice that sees many shapes

    def __init__(self, requested: str = "auto") -> None:
        if not isinstance(requested, str) or not requested:
            raise ValueError(f"backend must be 'auto' or a backend name, got {requested!r}")
        self.requested = requested
        self.resolutions = 0
        self._by_key: dict[tuple[Any, ...], ResolvedBackend] = {}
        self._last: ResolvedBackend | None = None
        if requested != "auto":
            self._last = self._resolve()

    @property
    def name(self) -> str | None:
        """Registered name of the backend last chosen; None while "auto" has seen no input."""
        return None if self._last is None else self._last.name

    def _resolve(
        self,
        x: torch.Tensor | None = None,
        guide: torch.Tensor | None = None,
        params: FilterParams | None = None,
    ) -> ResolvedBackend:
        self.resolutions += 1
        return resolve_backend(self.requested, x, guide, params)

    def backend_for(self, x: torch.Tensor, guide: torch.Tensor, params: FilterParams) -> OpBackend:
        """The backend for these (validated, 5D) inputs, resolved only for a kind of input not seen yet."""
        key = (x.device, x.dtype, guide.dtype, tuple(x.shape[1:]), guide.shape[1], params.radius,
               params.spacing)
        chosen = self._by_key.get(key)
        if chosen is None:
            chosen = self._resolve(x, guide, params)
            if len(self._by_key) >= self._MAX_KEYS:
                self._by_key.clear()
            self._by_key[key] = chosen
        self._last = chosen
        return chosen.backend

    def __repr__(self) -> str:
        return f"BackendChoice({self.requested!r}, chosen={self.name!r})"


__all__ = [
    "BackendChoice",
    "BackendStatus",
    "ResolvedBackend",
    "available_backends",
    "resolve_backend",
]

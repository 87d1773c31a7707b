"""Weight drift: how far each of a method's networks moved from where the run started.

A run folder keeps the method's weights at step 0 as ``init.pt`` (written when a run starts fresh, rewritten
by the benchmark's warm start with the parent's weights, never on resume). At the end of every training
session ``run.json`` gets ``"drift": {network: ||w - w0|| / ||w0||}`` over each network's parameters, for
every network of :meth:`voxuda.methods.base.Method.networks`, beside ``"reported_network"``. A teacher that
never left its warm start then shows as a drift near 0 even when the table row carries its name (the
adaptation review measured 1.7 % for Vox-UDA's 0.999 teacher after 100 steps, against 33 % for its student).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from voxuda.engine.checkpoint import FORMAT, VERSION, load_checkpoint, save_atomic

INIT_CHECKPOINT = "init.pt"


def save_initial_weights(method_state: Mapping[str, Tensor], path: str | Path) -> Path:
    """Write ``init.pt``: a checkpoint holding only the method's state at step 0."""
    return save_atomic({"format": FORMAT, "version": VERSION, "step": 0, "method": dict(method_state)}, path)


def load_initial_weights(path: str | Path) -> dict[str, Tensor] | None:
    """The method state in ``init.pt``, or None when the run has none (runs from before it existed)."""
    path = Path(path)
    if not path.is_file():
        return None
    return load_checkpoint(path)["method"]


def relative_drift(parameters: Mapping[str, Tensor], initial: Mapping[str, Tensor]) -> float | None:
    """``||w - w0|| / ||w0||`` over the parameters present in both with the same shape (float64 sums);
    None when none match or ``w0`` is all zero."""
    moved = start = 0.0
    matched = 0
    for name, value in parameters.items():
        before = initial.get(name)
        if before is None or tuple(before.shape) != tuple(value.shape):
            continue
        now, then = value.detach().double().cpu(), before.detach().double().cpu()
        moved += float((now - then).pow(2).sum())
        start += float(then.pow(2).sum())
        matched += 1
    if not matched or start <= 0:
        return None
    return math.sqrt(moved) / math.sqrt(start)


def network_drift(method: nn.Module, networks: Mapping[str, nn.Module],
                  initial: Mapping[str, Tensor]) -> dict[str, float | None]:
    """Drift of each named network, its parameters found in ``initial`` (a ``method.state_dict()``) under the
    network's own prefix in ``method``; None for a network that is not a sub-module of ``method``."""
    prefixes = {id(module): name for name, module in method.named_modules()}
    drift: dict[str, float | None] = {}
    for key, network in networks.items():
        prefix = prefixes.get(id(network))
        if prefix is None:
            drift[key] = None
            continue
        head = f"{prefix}." if prefix else ""
        parameters = {head + name: p for name, p in network.named_parameters()}
        drift[key] = relative_drift(parameters, initial)
    return drift


def drift_record(method: Any, initial: Mapping[str, Tensor] | None) -> dict[str, Any]:
    """What ``run.json`` records: ``drift`` per network (empty without ``init.pt``), ``reported_network``."""
    networks = method.networks()
    drift = network_drift(method, networks, initial) if initial is not None and networks else {}
    return {"drift": drift, "reported_network": method.reported_network}


__all__ = ["INIT_CHECKPOINT", "drift_record", "load_initial_weights", "network_drift", "relative_drift",
           "save_initial_weights"]

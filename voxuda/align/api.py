"""Building aligners from config refs, recording fitted ones and rebuilding them from the record.

The record (``alignment_record``) is what ``run.json`` keeps under ``"alignment"``: the aligner's resolved
config and its fitted state, e.g. ``{"aligner": {"name": "spectrum_match", "detrend": true, ...},
"state": {"box": [32, 32, 32], "source_power": [...], "target_power": [...], "gain": [...], ...}}``.
Evaluation and ``voxuda segment`` rebuild the aligner from it with :func:`aligner_from_record`, so a model is
used with exactly the statistics it was trained with, without reading any training data again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from voxuda.align.base import Aligner, Domain
from voxuda.config import ComponentRef, component_ref
from voxuda.data.transforms import Normalization

__all__ = ["align_volumes", "aligner_from_record", "alignment_record", "build_aligner", "is_identity"]

#: volumes per call of ``Aligner.apply`` when a whole split is aligned (bounds FFT memory)
CHUNK = 64


def is_identity(ref: ComponentRef | str | Mapping[str, Any] | None) -> bool:
    """True for no alignment at all (``none``), which callers skip so that default runs stay bit-identical."""
    if ref is None:
        return True
    ref = component_ref(ref)
    return ref.name in ("none", "voxuda:none") and not ref.params


def build_aligner(
    ref: ComponentRef | str | Mapping[str, Any], normalization: Normalization = "zscore"
) -> Aligner:
    """Build a registered aligner that re-normalises its output with ``normalization`` (the data's)."""
    from voxuda.api import build_component

    aligner = build_component("aligner", component_ref(ref))
    if not isinstance(aligner, Aligner):
        name = component_ref(ref).name
        raise TypeError(f"aligner {name!r} built a {type(aligner).__name__}, not a voxuda.align.Aligner")
    aligner.normalization = normalization
    return aligner


def alignment_record(ref: ComponentRef | str | Mapping[str, Any], aligner: Aligner) -> dict[str, Any]:
    """JSON of a fitted aligner: its resolved config (every default filled in) and its state."""
    from voxuda.api import resolved_config

    return {"aligner": resolved_config("aligner", component_ref(ref)), "state": aligner.state()}


def aligner_from_record(record: Mapping[str, Any], normalization: Normalization = "zscore") -> Aligner:
    """Rebuild the aligner of :func:`alignment_record` with its fitted state."""
    aligner = build_aligner(component_ref(record["aligner"]), normalization)
    state = record.get("state") or {}
    if aligner.needs_fit and not state:
        raise ValueError(f"aligner {aligner.name!r} needs fitted statistics but the record holds none")
    aligner.load_state(state)
    return aligner


def align_volumes(aligner: Aligner, volumes: Tensor, domain: Domain, chunk: int = CHUNK) -> Tensor:
    """``aligner.apply`` over a whole split, ``chunk`` volumes at a time, without gradients."""
    with torch.no_grad():
        parts = [aligner.apply(volumes[i:i + chunk], domain) for i in range(0, len(volumes), chunk)]
    return torch.cat(parts).contiguous() if parts else volumes

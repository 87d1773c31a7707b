"""What a run records about itself in ``run.json``: versions, components, seeds, selection and times."""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from pathlib import Path
from typing import Any

from voxuda import atomic
from voxuda.config import ComponentRef


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    import numpy
    import torch

    from voxuda import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "voxuda": __version__,
    }


def component_record(kind: str, ref: ComponentRef) -> dict[str, Any]:
    """Registry provenance (plugin, distribution, version, factory) and the resolved config of a component."""
    from voxuda.components import component_record as record

    return record(kind, ref)


def op_backend_used() -> str | None:
    """The op backend the bilateral ops last ran on, if any op ran in this process."""
    ops = sys.modules.get("voxuda.ops")
    if ops is None or not hasattr(ops, "last_backend_used"):
        return None
    try:
        return ops.last_backend_used()
    except Exception:  # provenance must never fail a finished run
        return None


def write_text_atomic(text: str, path: str | Path) -> Path:
    """Write text atomically (a kill never leaves half a config.toml; :mod:`voxuda.atomic`)."""
    return atomic.write_text(path, text)


def write_json_atomic(data: dict[str, Any], path: str | Path) -> Path:
    """Write JSON atomically (readers never see half a file; :mod:`voxuda.atomic`)."""
    return atomic.write_json(path, data, indent=2, default=str)

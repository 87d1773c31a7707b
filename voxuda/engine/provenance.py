"""What a run records about itself in ``run.json``: versions, components, seeds, selection and times."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

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
    from voxuda.methods.common import component_record as record

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
    """Write text through a temp file + fsync + ``os.replace`` (a kill never leaves half a config.toml)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def write_json_atomic(data: dict[str, Any], path: str | Path) -> Path:
    """Write JSON through a temp file + ``os.replace`` (readers never see half a file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path

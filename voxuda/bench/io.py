"""Atomic file writes: a result file is either the old one or the complete new one, never half-written.

An interrupted benchmark must not leave a truncated ``results.csv`` that a later resume (or a reader)
mistakes for a finished one, so everything goes through :mod:`voxuda.atomic` (a temporary file in the same
folder, flushed and renamed over the target).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from voxuda import atomic


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_text(path, text, newline="")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_bytes(path, data)


def json_safe(value: Any) -> Any:
    """NaN/inf become ``null`` (strict JSON has no NaN); containers are converted recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented strict JSON atomically (paths become strings, NaN becomes null)."""
    return write_text(path, json.dumps(json_safe(data), indent=2, default=str, allow_nan=False) + "\n")


def save_figure(fig: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (rendered to memory first, then renamed into place)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", **kwargs)
    return write_bytes(path, buf.getvalue())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (lines that fail to parse, e.g. a torn last line, skipped)."""
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out

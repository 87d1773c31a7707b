"""``metrics.jsonl``: one JSON object per logged step, appended and flushed immediately.

Append-only so that a crash loses at most the line being written and a resumed run simply continues the
file; after a resume a ``{"event": "resume", "step": k}`` line marks where the replayed steps start (readers
keep the last record of each step).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Append JSON lines to ``path``; each write is flushed (and fsync-ed when ``durable``)."""

    def __init__(self, path: str | Path, durable: bool = False) -> None:
        self.path = Path(path)
        self.durable = durable
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._handle.flush()
        if self.durable:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of ``metrics.jsonl``; after a resume only the last record of each step is kept."""
    by_step: dict[int, dict[str, Any]] = {}
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "event" in record:
            events.append(record)
        elif "step" in record:
            by_step[int(record["step"])] = record
    return [by_step[s] for s in sorted(by_step)]

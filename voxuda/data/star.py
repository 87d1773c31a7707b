"""A minimal reader for the data blocks of RELION STAR files (loops and key-value pairs).

Why not a library: the maintained ``starfile`` package pulls in pandas and pyarrow, which the core
install avoids. When ``starfile`` is installed it is used instead (see :func:`read_star`).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from voxuda.data.errors import DataError

__all__ = ["read_star", "parse_star"]


def parse_star(text: str, path: str | os.PathLike[str] = "<star>") -> dict[str, list[dict[str, str]]]:
    """Parse STAR text into ``{block_name: rows}``; a key-value block becomes a single row."""
    blocks: dict[str, list[dict[str, str]]] = {}
    name: str | None = None
    cols: list[str] = []
    in_loop = False
    pairs: dict[str, str] = {}

    def flush_pairs() -> None:
        if name is not None and pairs:
            blocks.setdefault(name, []).append(dict(pairs))
            pairs.clear()

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("data_"):
            flush_pairs()
            name, cols, in_loop = line[5:], [], False
            blocks.setdefault(name, [])
        elif line.startswith("loop_"):
            flush_pairs()
            cols, in_loop = [], True
        elif line.startswith("_"):
            parts = line.split(None, 1)
            key = parts[0][1:]
            if in_loop and (len(parts) == 1 or parts[1].startswith("#")):
                cols.append(key)
            else:
                in_loop = False
                pairs[key] = parts[1].strip() if len(parts) > 1 else ""
        elif in_loop and cols:
            vals = shlex.split(line, posix=True)
            if len(vals) != len(cols):
                raise DataError(
                    path, f"line {lineno}: {len(vals)} values for {len(cols)} columns", "fix the STAR loop"
                )
            assert name is not None
            blocks[name].append(dict(zip(cols, vals, strict=True)))
        else:
            raise DataError(path, f"line {lineno}: unexpected content {line[:40]!r}", "check the STAR syntax")
    flush_pairs()
    return blocks


def read_star(path: str | os.PathLike[str]) -> dict[str, list[dict[str, str]]]:
    """Read a STAR file (``starfile`` if installed, else the built-in parser); keys without leading ``_``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "STAR file not found", "check the coordinates path")
    try:
        import starfile  # type: ignore[import-not-found]
    except ImportError:
        return parse_star(p.read_text(encoding="utf-8"), p)
    data = starfile.read(p, always_dict=True)
    out: dict[str, list[dict[str, str]]] = {}
    for block, df in data.items():
        if hasattr(df, "to_dict"):
            out[block] = [{k.lstrip("_"): str(v) for k, v in r.items()} for r in df.to_dict("records")]
        else:
            out[block] = [{k.lstrip("_"): str(v) for k, v in df.items()}]
    return out

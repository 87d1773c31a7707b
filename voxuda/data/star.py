"""RELION STAR files through the maintained ``starfile`` package (the ``star`` extra).

Why ``starfile`` and not a parser of our own: STAR has quoting, comment, empty-block and key-value-block rules
that every hand-written reader gets subtly wrong, and RELION, Warp and copick users exchange files written by
``starfile`` already. It needs pandas, which the core install avoids, so it is imported here on first use and
a missing install is one line that says what to install.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from voxuda.data.errors import DataError
from voxuda.data.mrc import atomic_path

__all__ = ["read_star", "write_star", "STAR_INSTALL_HINT"]

STAR_INSTALL_HINT = "STAR files need the starfile package: pip install 'voxuda[star]' (or use a .csv file)"

# starfile stamps the wall-clock time in its first comment line; dropping it keeps reruns byte-identical.
_STARFILE_STAMP = "# Created by the starfile Python package"


def _starfile(path: Path) -> Any:
    try:
        import starfile
    except ImportError as exc:
        raise DataError(path, "cannot read or write STAR", STAR_INSTALL_HINT) from exc
    return starfile


def read_star(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{block name: pandas.DataFrame}`` of a STAR file; a key-value block becomes a one-row frame."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "STAR file not found", "check the coordinates path")
    starfile = _starfile(p)
    import pandas as pd

    try:
        blocks = starfile.read(p, always_dict=True)
    except Exception as exc:  # starfile raises bare pandas/parser errors on malformed text
        raise DataError(p, f"not a readable STAR file ({type(exc).__name__}: {exc})",
                        "check the STAR syntax") from exc
    out: dict[str, Any] = {}
    for name, block in blocks.items():
        out[name] = block if isinstance(block, pd.DataFrame) else pd.DataFrame([block])
    return out


def write_star(blocks: dict[str, Any], path: str | os.PathLike[str], comment: str = "") -> Path:
    """Write ``{block name: DataFrame}`` atomically (temporary file, then rename), without a time stamp."""
    p = Path(path)
    starfile = _starfile(p)
    text = starfile.to_string(blocks, float_format="%.6f", sep="\t")
    lines = [line for line in text.splitlines() if not line.startswith(_STARFILE_STAMP)]
    while lines and not lines[0].strip():
        lines.pop(0)
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    with atomic_path(p) as tmp:
        tmp.write_text(head + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return p

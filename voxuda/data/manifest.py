"""Manifests: the table that says which MRC files form a dataset and what is known about each.

A manifest is CSV or JSON (a list of objects). Required columns are :data:`REQUIRED_COLUMNS`; anything else
(nominal vs measured SNR, tilt range, dose, ...) is kept as extra metadata. Paths are relative to the
manifest's folder. Empty cells mean "unknown" (e.g. no label for a real target volume).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxuda.data.errors import DataError
from voxuda.data.mrc import atomic_path

__all__ = [
    "REQUIRED_COLUMNS",
    "POLARITIES",
    "ManifestRow",
    "read_manifest",
    "write_manifest",
    "select_rows",
]

#: Columns every manifest must have (cells may be empty where marked optional in the docs).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "id",
    "split",
    "domain",
    "class",
    "voxel_size",
    "polarity",
    "snr",
    "defocus",
    "seed",
    "volume",
    "label",
)

#: Allowed contrast polarities of protein: ``bright`` (positive) or ``dark`` (negative, real underfocus).
POLARITIES: tuple[str, ...] = ("bright", "dark", "")


def _float_or_nan(text: Any) -> float:
    if text is None or (isinstance(text, str) and text.strip() == ""):
        return math.nan
    return float(text)


@dataclass(frozen=True)
class ManifestRow:
    """One subtomogram. ``volume``/``label`` are absolute paths after reading."""

    id: str
    split: str
    domain: str
    class_name: str
    voxel_size: float
    polarity: str
    snr: float
    defocus: float
    seed: str
    volume: Path
    label: Path | None
    extra: dict[str, str] = field(default_factory=dict)

    def to_record(self, root: Path) -> dict[str, str]:
        """Flat string record with paths relative to ``root`` (for writing)."""

        def rel(p: Path | None) -> str:
            if p is None:
                return ""
            try:
                return Path(os.path.relpath(p, root)).as_posix()
            except ValueError:
                return str(p)

        def num(x: float) -> str:
            return "" if math.isnan(x) else repr(float(x))

        rec = {
            "id": self.id,
            "split": self.split,
            "domain": self.domain,
            "class": self.class_name,
            "voxel_size": num(self.voxel_size),
            "polarity": self.polarity,
            "snr": num(self.snr),
            "defocus": num(self.defocus),
            "seed": self.seed,
            "volume": rel(self.volume),
            "label": rel(self.label),
        }
        rec.update(self.extra)
        return rec


def _parse_records(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataError(path, "manifest not found", "create manifest.csv/json or pass manifest=...") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"invalid JSON ({exc})", "fix the manifest syntax") from exc
        if isinstance(data, dict) and "rows" in data:
            data = data["rows"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(path, "JSON manifest must be a list of objects", "write one object per volume")
        return data
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise DataError(path, "manifest is empty", "add a header line and one row per volume")
    return [dict(r) for r in reader]


def read_manifest(path: str | os.PathLike[str], *, check_files: bool = True) -> list[ManifestRow]:
    """Read and validate a manifest; paths are resolved against its folder.

    Raises :class:`DataError` naming the manifest for missing columns, bad polarity/number cells, or (with
    ``check_files``) a volume/label file that does not exist.
    """
    p = Path(path)
    records = _parse_records(p)
    if not records:
        raise DataError(p, "manifest has no rows", "add one row per volume")
    missing = [c for c in REQUIRED_COLUMNS if c not in records[0]]
    if missing:
        raise DataError(
            p,
            f"missing required column(s) {', '.join(missing)}",
            f"columns are {', '.join(REQUIRED_COLUMNS)}",
        )
    root = p.parent
    rows: list[ManifestRow] = []
    for n, rec in enumerate(records, start=2 if p.suffix.lower() != ".json" else 1):
        rec = {k: "" if v is None else str(v) for k, v in rec.items()}
        pol = rec["polarity"].strip().lower()
        if pol not in POLARITIES:
            raise DataError(
                p, f"row {n}: polarity {rec['polarity']!r} is not bright/dark", "use bright, dark or empty"
            )
        try:
            vs, snr, dfc = (_float_or_nan(rec[k]) for k in ("voxel_size", "snr", "defocus"))
        except ValueError as exc:
            raise DataError(
                p, f"row {n}: bad number ({exc})", "voxel_size/snr/defocus must be numbers or empty"
            ) from exc
        if not rec["volume"].strip():
            raise DataError(p, f"row {n} ({rec['id']}): empty volume path", "every row needs a volume file")
        vol = (root / rec["volume"].strip()).resolve()
        lab = (root / rec["label"].strip()).resolve() if rec["label"].strip() else None
        if check_files:
            for what, f in (("volume", vol), ("label", lab)):
                if f is not None and not f.is_file():
                    raise DataError(
                        p,
                        f"row {n} ({rec['id']}) names a missing {what} file {f}",
                        "fix the path or regenerate the data",
                    )
        extra = {k: v for k, v in rec.items() if k not in REQUIRED_COLUMNS}
        rows.append(
            ManifestRow(
                id=rec["id"],
                split=rec["split"],
                domain=rec["domain"],
                class_name=rec["class"],
                voxel_size=vs,
                polarity=pol,
                snr=snr,
                defocus=dfc,
                seed=rec["seed"],
                volume=vol,
                label=lab,
                extra=extra,
            )
        )
    return rows


def write_manifest(rows: Sequence[ManifestRow], path: str | os.PathLike[str]) -> Path:
    """Write rows as CSV (or JSON for a ``.json`` path) atomically; paths become relative to its folder."""
    p = Path(path)
    recs = [r.to_record(p.parent) for r in rows]
    cols: list[str] = list(REQUIRED_COLUMNS)
    for r in recs:
        cols.extend(k for k in r if k not in cols)
    with atomic_path(p) as tmp:
        if p.suffix.lower() == ".json":
            tmp.write_text(json.dumps([{c: r.get(c, "") for c in cols} for r in recs], indent=1) + "\n")
        else:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", restval="")
            w.writeheader()
            w.writerows(recs)
            tmp.write_text(buf.getvalue(), encoding="utf-8")
    return p


def select_rows(
    rows: Iterable[ManifestRow], *, domain: str | None = None, split: str | None = None
) -> list[ManifestRow]:
    """Rows of one domain and/or split (``None`` = any)."""
    return [r for r in rows if (domain is None or r.domain == domain) and (split is None or r.split == split)]

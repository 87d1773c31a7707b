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

import numpy as np

from voxuda.data.errors import DataError
from voxuda.data.mrc import atomic_path
from voxuda.errors import ConfigError

__all__ = [
    "REQUIRED_COLUMNS",
    "POLARITIES",
    "ManifestRow",
    "read_manifest",
    "write_manifest",
    "select_rows",
    "build_manifest",
    "LABEL_SUFFIXES",
    "VOLUME_EXTENSIONS",
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
        if not math.isnan(vs) and not (math.isfinite(vs) and vs > 0):
            raise DataError(p, f"row {n} ({rec['id']}): voxel_size {rec['voxel_size']!r} is not positive",
                            "give the pixel size in Å, or leave the cell empty if unknown")
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


# ------------------------------------------------------------------------------------ building a manifest

#: suffixes that mark a label map beside its volume (``X.mrc`` + ``X_label.mrc``, as ``voxuda simulate``
#: and ``voxuda extract --labels`` write them).
LABEL_SUFFIXES: tuple[str, ...] = ("_label", "_labels")

#: file extensions of volumes a manifest is built from.
VOLUME_EXTENSIONS: tuple[str, ...] = (".mrc", ".rec", ".map")


def _pairs(folder: Path) -> list[tuple[str, Path, Path | None]]:
    """``(id, volume, label or None)`` found in ``folder`` by the naming rule of :func:`build_manifest`."""
    if (folder / "volumes").is_dir():
        labels_dir = folder / "labels"
        found = []
        for vol in sorted(p for p in (folder / "volumes").iterdir() if p.suffix.lower() in VOLUME_EXTENSIONS):
            candidates = [labels_dir / f"{vol.stem}{s}{vol.suffix}" for s in ("", *LABEL_SUFFIXES)]
            label = next((c for c in candidates if c.is_file()), None)
            found.append((vol.stem, vol, label))
        return found
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VOLUME_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    labels = {p for p in files if p.stem.endswith(LABEL_SUFFIXES)}
    volumes = [p for p in files if p not in labels]
    found = []
    for vol in volumes:
        candidates = [vol.with_name(f"{vol.stem}{s}{vol.suffix}") for s in LABEL_SUFFIXES]
        label = next((c for c in candidates if c in labels), None)
        labels.discard(label)
        found.append((vol.stem, vol, label))
    if labels:
        orphan = sorted(labels)[0]
        raise DataError(orphan, "label map without a volume beside it",
                        f"name the volume {orphan.name.rsplit('_', 1)[0]}{orphan.suffix}")
    return found


def build_manifest(
    folder: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    domain: str = "source",
    split: str = "train",
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    seed: int = 0,
    class_name: str = "unknown",
    polarity: str = "dark",
    voxel_size: float | None = None,
    overwrite: bool = False,
    note: Any = None,
) -> tuple[Path, list[ManifestRow]]:
    """Write a manifest for the volume/label pairs in ``folder``; returns its path and rows.

    Naming rule: either ``folder/volumes/X.mrc`` with ``folder/labels/X.mrc`` (or ``X_label.mrc``), or
    anywhere under ``folder`` ``X.mrc`` with ``X_label.mrc`` (or ``X_labels.mrc``) beside it; ``.rec`` and
    ``.map`` count as ``.mrc``. A volume without a label becomes an unlabelled row. Voxel sizes come from the
    headers unless ``voxel_size`` is given; a missing or non-positive one is an error. ``val_fraction`` and
    ``test_fraction`` move that share of volumes (seeded) to splits ``val`` and ``test``; the others get
    ``split``.
    """
    from voxuda.data.mrc import PLAUSIBLE_VOXEL_SIZE, read_header

    root = Path(folder)
    if not root.is_dir():
        raise DataError(root, "folder not found", "pass the folder holding the volumes")
    dest = Path(output) if output is not None else root / "manifest.csv"
    if dest.exists() and not overwrite:
        raise DataError(dest, "exists", "pass --force to replace it or -o to write another file")
    if polarity not in POLARITIES or not polarity:
        raise ConfigError(f"--polarity {polarity!r}: use dark or bright")
    if not (val_fraction >= 0.0 and test_fraction >= 0.0 and val_fraction + test_fraction < 1.0):
        raise ConfigError(f"--val {val_fraction} and --test {test_fraction}: need fractions summing below 1")
    if voxel_size is not None and not (math.isfinite(voxel_size) and voxel_size > 0):
        raise ConfigError(f"--voxel-size {voxel_size}: must be a positive number of Å")
    pairs = _pairs(root)
    if not pairs:
        raise DataError(root, f"no volumes ({', '.join(VOLUME_EXTENSIONS)}) found",
                        "put X.mrc + X_label.mrc files, or volumes/ and labels/ folders, there")
    ids = [i for i, _, _ in pairs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[0]
        raise DataError(root, f"two volumes are named {dup!r}", "give every volume a unique file name")
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val, n_test = int(round(val_fraction * len(pairs))), int(round(test_fraction * len(pairs)))
    splits = [split] * len(pairs)
    for rank, index in enumerate(order):
        if rank < n_val:
            splits[index] = "val"
        elif rank < n_val + n_test:
            splits[index] = "test"
    low, high = PLAUSIBLE_VOXEL_SIZE
    rows = []
    for (vid, vol, label), row_split in zip(pairs, splits, strict=True):
        shape, info, _ = read_header(vol)
        if label is not None and read_header(label)[0] != shape:
            raise DataError(label, f"label shape {read_header(label)[0]} differs from {vol.name}'s {shape}",
                            "pair each volume with its own label map")
        vs = voxel_size if voxel_size is not None else float(info.voxel_size[2])
        if not (math.isfinite(vs) and vs > 0):
            raise DataError(vol, f"header pixel size is {vs:g} Å", "pass the real one with --voxel-size")
        if note is not None and not low < vs <= high:
            note(f"warning: {vol}: pixel size {vs:g} Å is implausible "
                 f"(expected {low:g} < size <= {high:g} Å)")
        if note is not None and len(set(shape)) != 1:
            note(f"{vol}: shape {shape} is not a cube; training resizes every volume to box^3, so cut "
                 "subtomograms from a tomogram with voxuda extract --labels instead")
        rows.append(ManifestRow(id=vid, split=row_split, domain=domain, class_name=class_name, voxel_size=vs,
                                polarity=polarity, snr=math.nan, defocus=math.nan, seed="",
                                volume=vol.resolve(), label=label.resolve() if label else None))
    if not dest.parent.is_dir():
        raise DataError(dest, "output folder does not exist", "create it first")
    return write_manifest(rows, dest), rows

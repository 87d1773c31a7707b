"""Subtomogram datasets read from a folder of MRC files plus a manifest.

A *source* dataset has labels; a *target* dataset may have labels, but methods must only use them for
evaluation (``with_labels=False`` drops them entirely). Each item is a :class:`Subtomogram`: a float32
``(1, D, H, W)`` volume, an int64 ``(D, H, W)`` label or ``None``, and metadata, including whether the
contrast polarity was inverted (exactly once, before normalisation) to reach ``canonical_polarity``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch.utils.data import Dataset

from voxuda.data.errors import DataError
from voxuda.data.manifest import ManifestRow, read_manifest, select_rows
from voxuda.data.mrc import read_labels, read_volume
from voxuda.data.transforms import normalize, polarity_factor, resize_labels, resize_volume

__all__ = [
    "MRCDatasetConfig",
    "Subtomogram",
    "SubtomogramBatch",
    "MRCSubtomogramDataset",
    "collate_subtomograms",
    "load_split",
    "find_manifest",
]


def _choice(*allowed: Any) -> Any:
    return (
        attrs.validators.optional(attrs.validators.in_(allowed))
        if None in allowed
        else attrs.validators.in_(allowed)
    )


@attrs.define(kw_only=True)
class MRCDatasetConfig:
    """Where a subtomogram set lives and how each volume is prepared."""

    root: str = attrs.field(metadata={"help": "folder with the manifest and MRC files"})
    manifest: str = attrs.field(
        default="manifest.csv", metadata={"help": "manifest file (CSV or JSON) inside root"}
    )
    domain: str | None = attrs.field(
        default=None, metadata={"help": "keep rows of this domain only (None: all)"}
    )
    split: str | None = attrs.field(
        default="train", metadata={"help": "keep rows of this split only (None: all)"}
    )
    box: int = attrs.field(
        default=32, metadata={"help": "working box edge in voxels (volumes are resized to box^3)"}
    )
    normalization: str = attrs.field(
        default="zscore",
        validator=_choice("zscore", "minmax", "none"),
        metadata={"help": "per-volume normalisation: zscore, minmax or none"},
    )
    canonical_polarity: str | None = attrs.field(
        default="bright",
        validator=_choice("bright", "dark", None),
        metadata={"help": "invert volumes whose known polarity differs (bright, dark, or None to keep)"},
    )
    polarity: str | None = attrs.field(
        default=None,
        validator=_choice("bright", "dark", "", None),
        metadata={"help": "the polarity of every row instead of the manifest's column ('' = unknown; None: "
                          "the manifest's)"},
    )
    num_classes: int = attrs.field(default=2, metadata={"help": "number of label values (0..num_classes-1)"})
    with_labels: bool = attrs.field(
        default=True, metadata={"help": "load label maps (False for unlabelled target use)"}
    )
    label_resize: str = attrs.field(
        default="nearest",
        validator=_choice("nearest", "onehot"),
        metadata={"help": "label-safe resize: nearest, or onehot (resample indicators, argmax)"},
    )
    cache: bool = attrs.field(
        default=True, metadata={"help": "keep prepared items in memory after first read"}
    )


@dataclass
class Subtomogram:
    """One prepared item."""

    volume: torch.Tensor  # float32 (1, D, H, W)
    label: torch.Tensor | None  # int64 (D, H, W)
    id: str
    class_name: str
    domain: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SubtomogramBatch:
    """A collated batch: volumes (N, 1, D, H, W), labels (N, D, H, W) or None, per-item ids/classes."""

    volume: torch.Tensor
    label: torch.Tensor | None
    ids: list[str]
    class_names: list[str]
    meta: list[dict[str, Any]]


def collate_subtomograms(items: list[Subtomogram]) -> SubtomogramBatch:
    """``collate_fn`` for :class:`torch.utils.data.DataLoader`."""
    labels = [it.label for it in items]
    lab = torch.stack(labels) if all(lbl is not None for lbl in labels) else None  # type: ignore[arg-type]
    return SubtomogramBatch(
        torch.stack([it.volume for it in items]),
        lab,
        [it.id for it in items],
        [it.class_name for it in items],
        [it.meta for it in items],
    )


def find_manifest(root: Path, name: str) -> Path:
    """Resolve the manifest; an empty or missing folder gives a clear :class:`DataError`."""
    if not root.is_dir():
        raise DataError(root, "dataset folder does not exist", "check root or run `voxuda simulate` first")
    if not any(root.iterdir()):
        raise DataError(
            root, "dataset folder is empty", "put MRC files and a manifest there, or run `voxuda simulate`"
        )
    path = root / name
    if not path.is_file():
        alt = [p.name for p in root.glob("manifest.*")]
        hint = (
            f"found {', '.join(alt)}; pass manifest=..." if alt else "write a manifest.csv (see docs/data.md)"
        )
        raise DataError(path, "manifest not found", hint)
    return path


def _prepare(row: ManifestRow, cfg: MRCDatasetConfig) -> Subtomogram:
    arr, info = read_volume(row.volume)
    vol = torch.from_numpy(arr)
    polarity = row.polarity if cfg.polarity is None else cfg.polarity
    factor = polarity_factor(polarity, cfg.canonical_polarity)
    if factor != 1.0:
        vol = vol * factor
    vol = normalize(vol, cfg.normalization)  # type: ignore[arg-type]
    vol = resize_volume(vol, cfg.box)
    label: torch.Tensor | None = None
    if cfg.with_labels and row.label is not None:
        lab_np, _ = read_labels(row.label)
        if lab_np.shape != arr.shape:
            raise DataError(
                row.label,
                f"label shape {lab_np.shape} differs from volume shape {arr.shape}",
                "regenerate the label map for this volume",
            )
        lo, hi = int(lab_np.min()), int(lab_np.max())
        if lo < 0 or hi >= cfg.num_classes:
            raise DataError(
                row.label,
                f"label values {lo}..{hi} out of range for num_classes={cfg.num_classes}",
                "fix the labels or raise num_classes",
            )
        label = resize_labels(torch.from_numpy(lab_np), cfg.box, cfg.num_classes, cfg.label_resize)  # type: ignore[arg-type]
    vs = row.voxel_size if not math.isnan(row.voxel_size) else float(info.voxel_size[0])
    meta = {
        "polarity": polarity,
        "polarity_inverted": factor == -1.0,
        "voxel_size": vs * arr.shape[0] / cfg.box,
        "source_voxel_size": vs,
        "snr": row.snr,
        "defocus": row.defocus,
        "split": row.split,
        "path": str(row.volume),
        **row.extra,
    }
    return Subtomogram(vol.unsqueeze(0).contiguous(), label, row.id, row.class_name, row.domain, meta)


class MRCSubtomogramDataset(Dataset[Subtomogram]):
    """Torch dataset over the manifest rows selected by ``config`` (see :class:`MRCDatasetConfig`)."""

    def __init__(self, config: MRCDatasetConfig) -> None:
        self.config = config
        root = Path(config.root)
        path = find_manifest(root, config.manifest)
        rows = select_rows(read_manifest(path), domain=config.domain, split=config.split)
        if not rows:
            raise DataError(
                path,
                f"no rows for domain={config.domain!r} split={config.split!r}",
                "check the domain and split names in the manifest",
            )
        self.rows = rows
        self._cache: dict[int, Subtomogram] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Subtomogram:
        if self.config.cache and index in self._cache:
            return self._cache[index]
        item = _prepare(self.rows[index], self.config)
        if self.config.cache:
            self._cache[index] = item
        return item

    @property
    def class_names(self) -> list[str]:
        return [r.class_name for r in self.rows]


def load_split(
    root: str | Path,
    domain: str | None,
    split: str | None,
    *,
    box: int = 32,
    normalization: str = "zscore",
    canonical_polarity: str | None = "bright",
    num_classes: int = 2,
    with_labels: bool = True,
    manifest: str = "manifest.csv",
    limit: int | None = None,
    polarity: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, list[dict[str, Any]]]:
    """All volumes of one domain/split in memory.

    Returns ``(N,1,D,H,W)`` float32 volumes, ``(N,D,H,W)`` int64 labels (or None) and metadata.

    Metadata dicts carry ``id``, ``class`` and the per-item meta of :class:`Subtomogram`.
    """
    cfg = MRCDatasetConfig(
        root=str(root),
        manifest=manifest,
        domain=domain,
        split=split,
        box=box,
        normalization=normalization,
        canonical_polarity=canonical_polarity,
        polarity=polarity,
        num_classes=num_classes,
        with_labels=with_labels,
        cache=False,
    )
    ds = MRCSubtomogramDataset(cfg)
    n = len(ds) if limit is None else min(limit, len(ds))
    items = [ds[i] for i in range(n)]
    vols = torch.stack([it.volume for it in items])
    labels = [it.label for it in items]
    lab = torch.stack(labels) if with_labels and all(x is not None for x in labels) else None  # type: ignore[arg-type]
    meta = [{"id": it.id, "class": it.class_name, "domain": it.domain, **it.meta} for it in items]
    return vols, lab, meta


def as_numpy_meta(meta: list[dict[str, Any]], key: str) -> np.ndarray:
    """Column ``key`` of :func:`load_split` metadata as a numpy array (e.g. ``snr`` for per-SNR metrics)."""
    return np.array([m.get(key) for m in meta])

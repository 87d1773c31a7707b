"""Datasets: item format, polarity applied exactly once, resizing, validation errors (augmentations:
tests/methods/test_augment.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.conftest import write_set
from voxuda.data.datasets import MRCDatasetConfig, MRCSubtomogramDataset, collate_subtomograms, load_split
from voxuda.data.errors import DataError
from voxuda.data.mrc import VolumeInfo, read_volume, write_labels, write_volume
from voxuda.data.transforms import normalize, resize_labels


def _cfg(root: Path, **kw: object) -> MRCDatasetConfig:
    return MRCDatasetConfig(root=str(root), **kw)  # type: ignore[arg-type]


def test_item_format(small_set: Path) -> None:
    ds = MRCSubtomogramDataset(_cfg(small_set, box=16))
    it = ds[0]
    assert it.volume.shape == (1, 16, 16, 16) and it.volume.dtype == torch.float32
    assert it.label is not None and it.label.shape == (16, 16, 16) and it.label.dtype == torch.int64
    assert it.id == "v0" and it.class_name == "cls0" and it.domain == "dom"
    assert float(it.volume.mean()) == pytest.approx(0, abs=1e-5) and float(
        it.volume.std(unbiased=False)
    ) == pytest.approx(1, abs=1e-3)
    batch = collate_subtomograms([ds[0], ds[1]])
    assert batch.volume.shape == (2, 1, 16, 16, 16) and batch.label is not None and batch.ids == ["v0", "v1"]
    assert MRCSubtomogramDataset(_cfg(small_set, box=16, with_labels=False))[0].label is None


@pytest.mark.parametrize(
    ("polarity", "canonical", "inverted"),
    [
        ("dark", "bright", True),
        ("bright", "bright", False),
        ("dark", "dark", False),
        ("dark", None, False),
        ("bright", "dark", True),
    ],
)
def test_polarity_mapped_exactly_once(
    tmp_path: Path, polarity: str, canonical: str | None, inverted: bool
) -> None:
    root = write_set(tmp_path / "s", polarity=polarity)
    raw = torch.from_numpy(read_volume(root / "v0.mrc")[0])
    ds = MRCSubtomogramDataset(_cfg(root, box=16, canonical_polarity=canonical, normalization="minmax"))
    expected = normalize(-raw if inverted else raw, "minmax")
    for _ in range(2):  # a second access (cache) must not flip again
        it = ds[0]
        torch.testing.assert_close(it.volume[0], expected)
        assert it.meta["polarity_inverted"] is inverted
    vols, _, meta = load_split(
        root, "dom", "train", box=16, canonical_polarity=canonical, normalization="minmax"
    )
    torch.testing.assert_close(vols[0, 0], expected)
    assert meta[0]["polarity_inverted"] is inverted


def test_resize_and_voxel_size(small_set: Path) -> None:
    it = MRCSubtomogramDataset(_cfg(small_set, box=8))[0]
    assert it.volume.shape == (1, 8, 8, 8) and it.label is not None and it.label.shape == (8, 8, 8)
    assert set(it.label.unique().tolist()) <= {0, 1}
    assert it.meta["voxel_size"] == pytest.approx(24.0)


def test_label_resize_is_label_safe() -> None:
    lab = torch.zeros(16, 16, 16, dtype=torch.int64)
    lab[4:12, 4:12, 4:12] = 2
    for method in ("nearest", "onehot"):
        up = resize_labels(lab, 32, 3, method)  # type: ignore[arg-type]
        assert up.dtype == torch.int64 and set(up.unique().tolist()) == {0, 2}  # never an in-between class 1
        exact = 8 * 8 * 8 * 8  # the 8^3 cube doubled in each axis
        assert int((up == 2).sum()) == pytest.approx(exact, rel=0 if method == "nearest" else 0.02)


def test_load_split(small_set: Path) -> None:
    vols, labels, meta = load_split(small_set, "dom", "train", box=16)
    assert vols.shape == (3, 1, 16, 16, 16) and labels is not None and labels.shape == (3, 16, 16, 16)
    assert [m["id"] for m in meta] == ["v0", "v1", "v2"] and meta[1]["class"] == "cls1"


def _expect(exc_info: pytest.ExceptionInfo[DataError], name: str) -> None:
    msg = str(exc_info.value)
    assert "\n" not in msg and name in msg, msg


def test_label_shape_mismatch(small_set: Path) -> None:
    write_labels(small_set / "v1_label.mrc", np.zeros((8, 16, 16), np.int8), VolumeInfo.isotropic(12))
    ds = MRCSubtomogramDataset(_cfg(small_set, box=16))
    with pytest.raises(DataError, match="shape") as e:
        ds[1]
    _expect(e, "v1_label.mrc")


def test_label_out_of_range(small_set: Path) -> None:
    write_labels(small_set / "v2_label.mrc", np.full((16, 16, 16), 3, np.int8), VolumeInfo.isotropic(12))
    with pytest.raises(DataError, match="out of range") as e:
        MRCSubtomogramDataset(_cfg(small_set, box=16, num_classes=2))[2]
    _expect(e, "v2_label.mrc")


def test_nan_volume(small_set: Path) -> None:
    arr = np.zeros((16, 16, 16), np.float32)
    write_volume(small_set / "v0.mrc", arr, VolumeInfo.isotropic(12))
    import mrcfile

    with mrcfile.open(small_set / "v0.mrc", mode="r+") as m:
        m.data[3, 3, 3] = np.nan
    with pytest.raises(DataError, match="NaN") as e:
        MRCSubtomogramDataset(_cfg(small_set, box=16))[0]
    _expect(e, "v0.mrc")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty") as e:
        MRCSubtomogramDataset(_cfg(tmp_path / "empty"))
    _expect(e, "empty")


def test_manifest_names_missing_file(small_set: Path) -> None:
    (small_set / "v1.mrc").unlink()
    with pytest.raises(DataError, match="missing volume") as e:
        MRCSubtomogramDataset(_cfg(small_set))
    _expect(e, "manifest.csv")
    assert "v1.mrc" in str(e.value)


def test_manifest_missing_columns(small_set: Path) -> None:
    (small_set / "manifest.csv").write_text("id,split,volume\nv0,train,v0.mrc\n")
    with pytest.raises(DataError, match="missing required column") as e:
        MRCSubtomogramDataset(_cfg(small_set))
    _expect(e, "manifest.csv")


def test_json_manifest(small_set: Path) -> None:
    import csv

    rows = list(csv.DictReader((small_set / "manifest.csv").open()))
    (small_set / "manifest.json").write_text(json.dumps(rows))
    ds = MRCSubtomogramDataset(_cfg(small_set, manifest="manifest.json", box=16))
    assert len(ds) == 3 and ds[2].id == "v2"

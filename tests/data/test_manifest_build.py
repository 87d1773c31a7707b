"""build_manifest's naming rules and checks; read_manifest refuses a non-positive voxel size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxuda.data.errors import DataError
from voxuda.data.manifest import build_manifest, read_manifest
from voxuda.data.mrc import VolumeInfo, write_labels, write_volume
from voxuda.errors import ConfigError

INFO = VolumeInfo.isotropic(12.0)


def _pair(folder: Path, name: str, *, label: str | None = "_label", shape: tuple[int, ...] = (8, 8, 8)
          ) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_volume(folder / f"{name}.mrc", np.zeros(shape, np.float32), INFO)
    if label is not None:
        write_labels(folder / f"{name}{label}.mrc", np.ones(shape, np.int8), INFO)


def test_side_by_side_pairs_in_subfolders_and_seeded_splits(tmp_path: Path) -> None:
    for i in range(10):
        _pair(tmp_path / "ds" / f"part{i % 2}", f"v{i}", label="_labels" if i % 3 else "_label")
    _pair(tmp_path / "ds", "unlabelled", label=None)
    _pair(tmp_path / "ds" / ".hidden", "ignored")
    path, rows = build_manifest(tmp_path / "ds", val_fraction=0.2, test_fraction=0.1, seed=1)
    assert len(rows) == 11 and sum(r.label is not None for r in rows) == 10
    assert sorted(r.split for r in rows).count("val") == 2 and [r.split for r in rows].count("test") == 1
    again = build_manifest(tmp_path / "ds", output=tmp_path / "again.csv", val_fraction=0.2,
                           test_fraction=0.1, seed=1)[1]
    assert [r.split for r in again] == [r.split for r in rows]  # the seed fixes the assignment
    back = read_manifest(path)
    assert {r.id for r in back} == {r.id for r in rows} and all(r.voxel_size == 12.0 for r in back)


def test_refusals(tmp_path: Path) -> None:
    _pair(tmp_path / "a", "x")
    _pair(tmp_path / "a" / "sub", "x")
    with pytest.raises(DataError, match="two volumes are named 'x'"):
        build_manifest(tmp_path / "a")
    (tmp_path / "b" / "volumes").mkdir(parents=True)
    (tmp_path / "b" / "labels").mkdir()
    write_volume(tmp_path / "b" / "volumes" / "t.mrc", np.zeros((8, 8, 8), np.float32), INFO)
    write_labels(tmp_path / "b" / "labels" / "t.mrc", np.zeros((8, 8, 4), np.int8), INFO)
    with pytest.raises(DataError, match="label shape"):
        build_manifest(tmp_path / "b")
    with pytest.raises(ConfigError, match="--val"):
        build_manifest(tmp_path / "b", val_fraction=0.6, test_fraction=0.5)
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="no volumes"):
        build_manifest(tmp_path / "c")
    assert not list(tmp_path.rglob("manifest.csv"))


def test_zero_pixel_size_needs_voxel_size_and_cubes_get_a_note(tmp_path: Path) -> None:
    folder = tmp_path / "z"
    folder.mkdir()
    write_volume(folder / "flat.mrc", np.zeros((4, 8, 8), np.float32), INFO)
    import mrcfile

    with mrcfile.new(folder / "unset.mrc") as m:
        m.set_data(np.zeros((8, 8, 8), np.float32))
        m.voxel_size = 0.0
    with pytest.raises(DataError, match=r"unset\.mrc: header pixel size is 0"):
        build_manifest(folder)
    notes: list[str] = []
    _, rows = build_manifest(folder, voxel_size=13.48, note=notes.append)
    assert {r.voxel_size for r in rows} == {13.48}
    assert len(notes) == 1 and "flat.mrc" in notes[0] and "not a cube" in notes[0]


@pytest.mark.parametrize("bad", ["0", "-5", "inf"])
def test_read_manifest_refuses_a_non_positive_voxel_size(tmp_path: Path, bad: str) -> None:
    write_volume(tmp_path / "v.mrc", np.zeros((4, 4, 4), np.float32), INFO)
    path = tmp_path / "manifest.csv"
    path.write_text("id,split,domain,class,voxel_size,polarity,snr,defocus,seed,volume,label\n"
                    f"v,train,source,a,{bad},dark,,,,v.mrc,\n")
    with pytest.raises(DataError, match=r"row 2 \(v\): voxel_size .* is not positive"):
        read_manifest(path)
    path.write_text(path.read_text().replace(f",{bad},", ",,"))
    assert np.isnan(read_manifest(path)[0].voxel_size)  # empty = unknown stays allowed

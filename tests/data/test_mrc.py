"""MRC round trips for every accepted mode, geometry preservation, clear errors, atomic writes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from voxuda.data.errors import DataError
from voxuda.data.mrc import (
    VolumeInfo,
    open_tomogram,
    read_header,
    read_labels,
    read_volume,
    write_labels,
    write_volume,
)

INFO = VolumeInfo((12.5, 11.0, 10.25), (100.0, -20.0, 3.5))


def _valid(path: Path) -> bool:
    return bool(mrcfile.validate(str(path), print_file=io.StringIO()))


@pytest.mark.parametrize(
    ("dtype", "mode"), [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6), (np.float16, 12)]
)
def test_read_every_mode_as_float32(tmp_path: Path, dtype: type, mode: int) -> None:
    rng = np.random.default_rng(0)
    data = (rng.uniform(0, 100, size=(5, 6, 7))).astype(dtype)
    p = tmp_path / f"m{mode}.mrc"
    with mrcfile.new(p) as m:
        m.set_data(data)
        m.voxel_size = (10.25, 11.0, 12.5)
        m.header.origin.x, m.header.origin.y, m.header.origin.z = 3.5, -20.0, 100.0
    assert read_header(p)[2] == mode
    arr, info = read_volume(p)
    assert arr.dtype == np.float32 and arr.shape == (5, 6, 7)
    np.testing.assert_array_equal(arr, data.astype(np.float32))
    assert info == INFO
    # carried through a write: geometry and values survive, and the output is valid MRC2014
    out = write_volume(tmp_path / f"out{mode}.mrc", arr, info)
    back, info2 = read_volume(out)
    np.testing.assert_array_equal(back, arr)
    assert info2 == INFO and _valid(out)


def test_labels_written_as_int8_or_int16(tmp_path: Path) -> None:
    small = np.arange(60).reshape(3, 4, 5) % 3
    p = write_labels(tmp_path / "l.mrc", small, INFO)
    assert read_header(p)[2] == 0 and _valid(p)
    lab, info = read_labels(p)
    assert lab.dtype == np.int64 and info == INFO
    np.testing.assert_array_equal(lab, small)
    big = small * 200
    p2 = write_labels(tmp_path / "l2.mrc", big, INFO)
    assert read_header(p2)[2] == 1
    np.testing.assert_array_equal(read_labels(p2)[0], big)


def test_memory_mapped_tomogram(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(size=(20, 30, 40)).astype(np.float16)
    p = tmp_path / "tomo.mrc"
    with mrcfile.new(p) as m:
        m.set_data(data)
        m.voxel_size = 8.0
    with open_tomogram(p) as t:
        assert isinstance(t.data, np.memmap) and t.shape == (20, 30, 40) and t.mode == 12
        np.testing.assert_array_equal(t.read(np.s_[2:4, :, 5:9]), data[2:4, :, 5:9].astype(np.float32))
        assert t.info.voxel_size == (8.0, 8.0, 8.0)


def _one_line(err: DataError, path: Path) -> None:
    msg = str(err)
    assert "\n" not in msg and str(path) in msg


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.mrc"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(DataError) as e:
        read_volume(bad)
    _one_line(e.value, bad)
    good = write_volume(tmp_path / "good.mrc", np.zeros((8, 8, 8), np.float32), INFO)
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(DataError) as e:
        read_volume(cut)
    _one_line(e.value, cut)
    assert isinstance(e.value, ValueError)


def test_wrong_dimensionality_and_nonfinite(tmp_path: Path) -> None:
    p = tmp_path / "img2d.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.zeros((8, 9), np.float32))
    with pytest.raises(DataError, match="3-D") as e:
        read_volume(p)
    _one_line(e.value, p)
    nan = tmp_path / "nan.mrc"
    arr = np.zeros((4, 4, 4), np.float32)
    arr[1, 2, 3] = np.nan
    arr[0, 0, 0] = np.inf
    with mrcfile.new(nan) as m:
        m.set_data(arr)
    with pytest.raises(DataError, match="2 NaN/Inf") as e:
        read_volume(nan)
    _one_line(e.value, nan)
    with pytest.raises(DataError, match="NaN/Inf"):
        write_volume(tmp_path / "w.mrc", arr, INFO)
    assert not (tmp_path / "w.mrc").exists()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_volume(tmp_path / "nope.mrc")


def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "vol.mrc"
    old = write_volume(dest, np.ones((4, 4, 4), np.float32), INFO).read_bytes()

    def boom(self: object) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(mrcfile.mrcfile.MrcFile, "update_header_stats", boom)
    with pytest.raises(OSError, match="simulated"):
        write_volume(dest, np.zeros((4, 4, 4), np.float32), INFO)
    with pytest.raises(OSError):
        write_labels(tmp_path / "new_label.mrc", np.zeros((4, 4, 4), np.int8), INFO)
    assert dest.read_bytes() == old  # the previous complete file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.mrc"]  # no temp or partial files


def test_write_is_deterministic(tmp_path: Path) -> None:
    a = write_volume(tmp_path / "a.mrc", np.arange(27, dtype=np.float32).reshape(3, 3, 3), INFO)
    b = write_volume(tmp_path / "b.mrc", np.arange(27, dtype=np.float32).reshape(3, 3, 3), INFO)
    assert a.read_bytes() == b.read_bytes()

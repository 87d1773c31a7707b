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
    IMOD_STAMP,
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


# ------------------------------------------------------------------ files other tools write off-standard


def _imod_bytes(path: Path, values: np.ndarray, *, signed_flag: bool) -> Path:
    """Mode 0 as IMOD's trimvol/newstack write it: the stamp at byte 152, the flags at byte 156."""
    with mrcfile.new(path) as m:
        m.set_data(values.astype(np.uint8).view(np.int8))
        m.voxel_size = 13.48
    raw = bytearray(path.read_bytes())
    raw[152:156] = np.int32(IMOD_STAMP).tobytes()
    raw[156:160] = np.int32(1 if signed_flag else 0).tobytes()
    path.write_bytes(bytes(raw))
    return path


def test_imod_unsigned_bytes_are_read_as_unsigned(tmp_path: Path) -> None:
    values = np.arange(4 * 5 * 6).reshape(4, 5, 6) * 9 % 256  # 0..255, many above 127
    p = _imod_bytes(tmp_path / "trimvol.mrc", values, signed_flag=False)
    arr, _ = read_volume(p)
    np.testing.assert_array_equal(arr, values.astype(np.float32))  # 200 stays 200, not -56
    with open_tomogram(p) as t:
        np.testing.assert_array_equal(t.read(np.s_[1:3]), values[1:3].astype(np.float32))
    np.testing.assert_array_equal(read_labels(p)[0], values)
    # the same bytes with IMOD's signed flag set, or without the stamp, are signed (MRC2014)
    signed = _imod_bytes(tmp_path / "signed.mrc", values, signed_flag=True)
    np.testing.assert_array_equal(read_volume(signed)[0], values.astype(np.uint8).view(np.int8))


def test_trailing_bytes_and_missing_map_id_are_read_with_a_note(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    good = write_volume(tmp_path / "good.mrc", data, INFO)
    trailing = tmp_path / "trailing.mrc"
    trailing.write_bytes(good.read_bytes() + b"\0" * 64)
    no_map = tmp_path / "nomap.mrc"
    raw = bytearray(good.read_bytes())
    raw[208:212] = b"\0\0\0\0"
    no_map.write_bytes(bytes(raw))
    for path, words in ((trailing, "64 bytes larger"), (no_map, "permissive")):
        np.testing.assert_array_equal(read_volume(path)[0], data)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("voxuda: note: ")
        assert str(path) in err[0] and words in err[0]
    with open_tomogram(no_map) as t:
        np.testing.assert_array_equal(t.read(), data)


@pytest.mark.parametrize(("dims", "word"), [((-6, 5, 4), "negative"), ((6, 5, 0), "zero")])
def test_negative_or_zero_dimensions_are_one_line(tmp_path: Path, dims: tuple[int, int, int],
                                                 word: str) -> None:
    good = write_volume(tmp_path / "good.mrc", np.zeros((4, 5, 6), np.float32), INFO)
    bad = tmp_path / "bad.mrc"
    raw = bytearray(good.read_bytes())
    raw[0:12] = np.array(dims, np.int32).tobytes()
    bad.write_bytes(bytes(raw))
    for reader in (read_volume, read_labels, read_header, open_tomogram):
        with pytest.raises(DataError, match=word) as e:
            reader(bad)
        _one_line(e.value, bad)


def test_tilt_stacks_are_refused_by_open_tomogram(tmp_path: Path) -> None:
    data = np.zeros((41, 16, 16), np.float32)
    st = tmp_path / "TS_01.st"
    with mrcfile.new(st) as m:
        m.set_data(data)
    with pytest.raises(DataError, match=r"tilt series.*\.st") as e:
        open_tomogram(st)
    _one_line(e.value, st)
    stack = tmp_path / "TS_02.mrc"  # ispg 0 with one tilt angle per section beside it
    with mrcfile.new(stack) as m:
        m.set_data(data)
        m.set_image_stack()
    (tmp_path / "TS_02.tlt").write_text("\n".join(str(a) for a in range(-60, 61, 3)) + "\n")
    with pytest.raises(DataError, match=r"nz = 41 = the tilt angles in TS_02\.tlt"):
        open_tomogram(stack)
    (tmp_path / "TS_02.tlt").write_text("0\n")  # another count: ispg 0 alone is not refused (old IMOD)
    with open_tomogram(stack) as t:
        assert t.shape == (41, 16, 16)


@pytest.mark.parametrize("size", [0.0, 1.0, 250.0])
def test_implausible_pixel_size_is_noted_and_overridable(tmp_path: Path, size: float) -> None:
    p = tmp_path / "t.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.zeros((8, 8, 8), np.float32))
        m.voxel_size = size
    notes: list[str] = []
    with open_tomogram(p, note=notes.append) as t:
        assert t.info.voxel_size == (size,) * 3
    assert len(notes) == 1 and "implausible" in notes[0] and "--voxel-size" in notes[0]
    notes.clear()
    with open_tomogram(p, voxel_size=13.48, note=notes.append) as t:
        assert t.info.voxel_size == (13.48,) * 3 and notes == []
    with pytest.raises(DataError, match="--voxel-size"):
        open_tomogram(p, voxel_size=-1.0)


def test_a_deprecation_notice_while_reading_is_not_a_header_problem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """numpy 2.5 deprecates a call mrcfile 1.5 makes on every open: a clean file must stay note-free."""
    import warnings

    import mrcfile

    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    good = write_volume(tmp_path / "good.mrc", data, INFO)
    real_open = mrcfile.open

    def noisy_open(*args, **kwargs):  # type: ignore[no-untyped-def]
        warnings.warn("Setting the dtype on a NumPy array has been deprecated", DeprecationWarning,
                      stacklevel=2)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(mrcfile, "open", noisy_open)
    np.testing.assert_array_equal(read_volume(good)[0], data)
    assert capsys.readouterr().err == ""

"""Extraction of subtomograms at picked coordinates (STAR and CSV), borders, geometry, manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxuda.data.datasets import load_split
from voxuda.data.errors import DataError
from voxuda.data.extract import Pick, extract_subtomograms, read_picks
from voxuda.data.mrc import VolumeInfo, read_volume, write_volume
from voxuda.data.star import read_star
from voxuda.errors import ConfigError

STAR = """
# RELION picks
data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnClassNumber #5
tomo1  20.0  30.0  10.0  1
tomo1  2.0   30.0  10.0  2
tomo2  25.0  25.0  12.0  1
"""


@pytest.fixture
def tomo(tmp_path: Path) -> Path:
    z, y, x = np.meshgrid(np.arange(24), np.arange(48), np.arange(40), indexing="ij")
    data = (1000 * z + 10 * y + 0.01 * x).astype(np.float32)  # each voxel encodes its (z, y, x)
    return write_volume(tmp_path / "tomo1.mrc", data, VolumeInfo((8.0, 8.0, 8.0), (80.0, 0.0, -16.0)))


def test_star_reader(tmp_path: Path) -> None:
    star = tmp_path / "picks.star"
    star.write_text(STAR)
    rows = read_star(star)["particles"]
    assert len(rows) == 3 and rows["rlnCoordinateX"].iloc[0] == 20.0
    assert rows["rlnTomoName"].iloc[2] == "tomo2"


def test_extract_from_star_skip_and_pad(tmp_path: Path, tomo: Path) -> None:
    star = tmp_path / "picks.star"
    star.write_text(STAR)
    picks = read_picks(star, "tomo1")
    assert [p.class_name for p in picks] == ["1", "2"]
    man = extract_subtomograms(tomo, star, tmp_path / "out", box=8, border="skip")
    vols, labels, meta = load_split(
        man.parent, "target", "test", box=8, normalization="none", with_labels=False
    )
    assert vols.shape == (1, 1, 8, 8, 8) and labels is None and meta[0]["class"] == "1"
    sub, info = read_volume(man.parent / "tomo1-00000.mrc")
    # centre (x=20, y=30, z=10) -> box starts at (z, y, x) = (6, 26, 16)
    assert sub[0, 0, 0] == pytest.approx(1000 * 6 + 10 * 26 + 0.01 * 16, rel=1e-6)
    assert info.voxel_size == (8.0, 8.0, 8.0) and info.origin == (80.0 + 6 * 8, 26 * 8.0, -16.0 + 16 * 8)
    man2 = extract_subtomograms(tomo, star, tmp_path / "out2", box=8, border="pad")
    assert len(load_split(man2.parent, None, None, box=8, with_labels=False)[2]) == 2


def test_extract_from_csv_and_errors(tmp_path: Path, tomo: Path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("x,y,z,class\n20,20,12,ribo\n")
    man = extract_subtomograms(tomo, csv, tmp_path / "o", box=16, polarity="dark", domain="mytomo")
    _, _, meta = load_split(man.parent, "mytomo", "test", box=16, with_labels=False)
    assert meta[0]["class"] == "ribo" and meta[0]["polarity"] == "dark" and meta[0]["polarity_inverted"]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="x,y,z") as e:
        read_picks(bad)
    assert "bad.csv" in str(e.value)
    edge = tmp_path / "edge.csv"
    edge.write_text("x,y,z\n0,0,0\n")
    with pytest.raises(DataError, match="no pick"):
        extract_subtomograms(tomo, edge, tmp_path / "e", box=16, border="skip")


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_labels_cut_with_the_volumes(tmp_path: Path, tomo: Path) -> None:
    from voxuda.data.mrc import read_labels, write_labels

    z, y, x = np.indices((24, 48, 40))
    labels = ((z // 3 + y // 5 + x // 2) % 2).astype(np.int8)
    same = write_labels(tmp_path / "same.mrc", labels, VolumeInfo((8.0, 8.0, 8.0)))
    man = extract_subtomograms(tomo, None, tmp_path / "src", box=8, grid=True, labels=same, domain="source")
    vols, labs, meta = load_split(man.parent, "source", "test", box=8, normalization="none")
    assert vols.shape[0] == 3 * 6 * 5 and labs is not None and labs.shape == (90, 8, 8, 8)
    first = man.parent / "tomo1-00000_label.mrc"
    np.testing.assert_array_equal(read_labels(first)[0], labels[:8, :8, :8])
    # a label map at half the sampling: nearest neighbour over the same extent
    coarse = write_labels(tmp_path / "coarse.mrc", labels[::2, ::2, ::2], VolumeInfo((16.0, 16.0, 16.0)))
    notes: list[str] = []
    man2 = extract_subtomograms(tomo, [Pick(20, 30, 10)], tmp_path / "nn", box=8, labels=coarse,
                                note=notes.append)
    cut = read_labels(man2.parent / "tomo1-00000_label.mrc")[0]
    np.testing.assert_array_equal(cut, labels[::2, ::2, ::2][3:7, 13:17, 8:12].repeat(2, 0).repeat(2, 1)
                                  .repeat(2, 2))
    assert any("nearest neighbour" in n for n in notes)


def test_grid_and_random_boxes(tmp_path: Path, tomo: Path) -> None:
    man = extract_subtomograms(tomo, None, tmp_path / "g", box=16, grid=True, stride=8)
    _, _, meta = load_split(man.parent, "target", "test", box=16, with_labels=False)
    assert len(meta) == 2 * 5 * 4  # starts 0, 8 in z (24), 0..32 in y (48), 0..24 in x (40)
    r1 = extract_subtomograms(tomo, None, tmp_path / "r1", box=16, random=5, seed=3)
    r2 = extract_subtomograms(tomo, None, tmp_path / "r2", box=16, random=5, seed=3)
    assert r1.read_text().replace("r1", "") == r2.read_text().replace("r2", "")
    assert r1.read_text() != extract_subtomograms(tomo, None, tmp_path / "r3", box=16, random=5, seed=4
                                                  ).read_text().replace("r3", "r1")
    with pytest.raises(ConfigError, match="exactly one of PICKS, --grid or --random"):
        extract_subtomograms(tomo, None, tmp_path / "x", box=16)
    with pytest.raises(ConfigError, match="exactly one"):
        extract_subtomograms(tomo, None, tmp_path / "x", box=16, grid=True, random=3)
    with pytest.raises(ConfigError, match="add --grid"):
        extract_subtomograms(tomo, None, tmp_path / "x", box=16, random=3, stride=4)
    assert not (tmp_path / "x").exists()


def test_nan_in_the_second_box_leaves_nothing(tmp_path: Path) -> None:
    data = np.zeros((16, 16, 32), np.float32)
    data[8, 8, 24] = np.nan  # inside the second box only
    import mrcfile

    path = tmp_path / "nan_tomo.mrc"
    with mrcfile.new(path) as m, pytest.warns(RuntimeWarning, match="NaN"):
        m.set_data(data)
        m.voxel_size = 10.0
    out = tmp_path / "ds"
    with pytest.raises(DataError, match="NaN") as err:
        extract_subtomograms(path, [Pick(8, 8, 8), Pick(24, 8, 8)], out, box=16)
    assert "nan_tomo.mrc" in str(err.value)
    assert _listing(tmp_path) == ["nan_tomo.mrc"]  # no partial folder, nothing under the final name


def test_full_disk_leaves_nothing_and_keeps_the_previous_extract(tmp_path: Path, tomo: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import voxuda.data.extract as ex

    out = tmp_path / "ds"
    first = extract_subtomograms(tomo, [Pick(20, 30, 10)], out, box=8).read_text()
    calls = {"n": 0}
    real = ex.write_volume

    def full_disk(*args: object, **kwargs: object) -> Path:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device (simulated)")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ex, "write_volume", full_disk)
    with pytest.raises(OSError, match="No space"):
        extract_subtomograms(tomo, [Pick(20, 30, 10), Pick(20, 20, 10)], out, box=8)
    assert (out / "manifest.csv").read_text() == first  # the earlier complete extract is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_destination_and_pixel_size_checks(tmp_path: Path, tomo: Path) -> None:
    import mrcfile

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a folder written by voxuda extract"):
        extract_subtomograms(tomo, [Pick(20, 30, 10)], foreign, box=8)
    assert _listing(foreign) == ["notes.txt"]
    zero = tmp_path / "zero.mrc"
    with mrcfile.new(zero) as m:
        m.set_data(np.zeros((16, 16, 16), np.float32))
        m.voxel_size = 0.0
    with pytest.raises(DataError, match=r"pixel size is 0 Å.*--voxel-size"):
        extract_subtomograms(zero, None, tmp_path / "z", box=8, grid=True, note=None)
    assert not (tmp_path / "z").exists()
    man = extract_subtomograms(zero, None, tmp_path / "z", box=8, grid=True, voxel_size=13.48, note=None)
    assert read_volume(man.parent / "zero-00000.mrc")[1].voxel_size == pytest.approx((13.48,) * 3)


def test_box_size_is_compared_with_the_reference(tmp_path: Path, tomo: Path) -> None:
    from voxuda.data.extract import check_box, reference_box

    src = extract_subtomograms(tomo, [Pick(20, 24, 12)], tmp_path / "src", box=16, domain="source")
    assert reference_box(src.parent) == pytest.approx(16 * 8.0)
    verdict = check_box(16, 13.48, 32 * 10.0)  # a 32 px source at 10 Å vs a 13.48 Å tomogram
    assert not verdict.matches and verdict.suggested_box == round(320 / 13.48) == 24
    assert check_box(24, 13.48, 320.0).matches
    notes: list[str] = []
    extract_subtomograms(tomo, [Pick(20, 24, 12)], tmp_path / "t", box=8, match_box_of=src.parent,
                         note=notes.append)
    assert len(notes) == 1 and "--box 16" in notes[0] and "50 %" in notes[0]
    notes.clear()
    extract_subtomograms(tomo, [Pick(20, 24, 12)], tmp_path / "t2", box=15, match_box_of=src,
                         note=notes.append)
    assert notes == []

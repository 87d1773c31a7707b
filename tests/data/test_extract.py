"""Extraction of subtomograms at picked coordinates (STAR and CSV), borders, geometry, manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxuda.data.datasets import load_split
from voxuda.data.errors import DataError
from voxuda.data.extract import extract_subtomograms, read_picks
from voxuda.data.mrc import VolumeInfo, read_volume, write_volume
from voxuda.data.star import read_star

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
    assert len(rows) == 3 and rows["rlnCoordinateX"].iloc[0] == 20.0 and rows["rlnTomoName"].iloc[2] == "tomo2"


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

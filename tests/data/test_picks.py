"""Picks: RELION 4 pixels and RELION 5 centred Å read and written, rescaling, tomogram names, bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from voxuda.data.errors import DataError
from voxuda.data.mrc import VolumeInfo
from voxuda.data.picking import Particle, TomogramGeometry, read_picks, write_picks
from voxuda.errors import ConfigError

# an anisotropic shape makes a swapped axis or a wrong centre visible
GEO = TomogramGeometry("TS_01", (40, 64, 80), VolumeInfo((13.48, 13.48, 13.48), (0.0, 0.0, 0.0)))
PARTICLES = [Particle(10.25, 50.5, 30.0, 12, 1), Particle(70.0, 3.0, 5.5, 9, 2)]


def _xyz(picks: list) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in picks])


@pytest.mark.parametrize("relion", [4, 5])
def test_written_picks_read_back_at_the_same_pixels(tmp_path: Path, relion: int) -> None:
    star = write_picks(PARTICLES, tmp_path / "picks.star", GEO, relion=relion)
    blocks = starfile.read(star, always_dict=True)
    columns = set(blocks["particles"].columns)
    assert "rlnTomoPixelSize" not in columns and "rlnTomoTiltSeriesPixelSize" in blocks["optics"].columns
    assert ("rlnCoordinateX" in columns) == (relion == 4)
    assert ("rlnCenteredCoordinateXAngst" in columns) == (relion == 5)
    picks = read_picks(star, geometry=GEO)
    np.testing.assert_allclose(_xyz(picks), [(p.x, p.y, p.z) for p in PARTICLES], atol=1e-3)
    assert [p.class_name for p in picks] == ["1", "2"]
    again = write_picks(PARTICLES, tmp_path / "again.star", GEO, relion=relion)
    assert star.read_bytes() == again.read_bytes()  # no time stamp: reruns are byte-identical


def test_relion5_centred_angstrom_uses_the_tomogram_centre(tmp_path: Path) -> None:
    star = tmp_path / "r5.star"
    frame = pd.DataFrame({"rlnTomoName": ["TS_01", "TS_02"], "rlnCenteredCoordinateXAngst": [0.0, 5.0],
                          "rlnCenteredCoordinateYAngst": [-134.8, 0.0],
                          "rlnCenteredCoordinateZAngst": [26.96, 0.0]})
    starfile.write({"particles": frame}, star)
    (pick,) = read_picks(star, geometry=GEO)  # TS_02 is another tomogram
    # x: centre 80/2 = 40; y: 64/2 - 134.8/13.48 = 22; z: 40/2 + 2 = 22
    assert (pick.x, pick.y, pick.z) == pytest.approx((40.0, 22.0, 22.0))
    with pytest.raises(DataError, match="RELION 5 centred coordinates"):
        read_picks(star, "TS_01")  # no tomogram geometry: cannot convert
    with pytest.raises(ConfigError, match="RELION 5"):
        read_picks(star, geometry=GEO, binning=2)


def test_binned_picks_are_rescaled(tmp_path: Path) -> None:
    """RELION 4 counts pixels of the (unbinned) tilt series; the optics table's pixel size rescales them."""
    star = tmp_path / "r4.star"
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnTomoTiltSeriesPixelSize": [3.37]})
    frame = pd.DataFrame({"rlnTomoName": ["TS_01"], "rlnCoordinateX": [160.0], "rlnCoordinateY": [80.0],
                          "rlnCoordinateZ": [40.0], "rlnOpticsGroup": [1]})
    starfile.write({"optics": optics, "particles": frame}, star)
    notes: list[str] = []
    (pick,) = read_picks(star, geometry=GEO, note=notes.append)
    assert (pick.x, pick.y, pick.z) == pytest.approx((40.0, 20.0, 10.0))  # 3.37 / 13.48 = 1/4
    assert len(notes) == 1 and "3.37" in notes[0] and "rescaled" in notes[0]
    (same,) = read_picks(star, geometry=GEO, binning=4)
    assert (same.x, same.y, same.z) == pytest.approx((40.0, 20.0, 10.0))
    (explicit,) = read_picks(star, geometry=GEO, pixel_size=6.74)
    assert (explicit.x, explicit.y, explicit.z) == pytest.approx((80.0, 40.0, 20.0))
    csv = tmp_path / "p.csv"
    csv.write_text("x,y,z\n8,6,4\n")
    (c,) = read_picks(csv, geometry=GEO, binning=2)
    assert (c.x, c.y, c.z) == (4.0, 3.0, 2.0)
    with pytest.raises(ConfigError, match="not both"):
        read_picks(csv, geometry=GEO, binning=2, pixel_size=3.0)
    with pytest.raises(ConfigError, match="--picks-binning"):
        read_picks(csv, geometry=GEO, binning=0)


@pytest.mark.parametrize("bad", ["nan", "abc"])
def test_a_bad_coordinate_names_file_and_row(tmp_path: Path, bad: str) -> None:
    star = tmp_path / "bad.star"
    star.write_text("data_particles\n\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                    f"_rlnCoordinateZ #4\nTS_01 1 2 3\nTS_01 4 {bad} 6\n")
    with pytest.raises(DataError) as err:
        read_picks(star, geometry=GEO)
    msg = str(err.value)
    assert "\n" not in msg and "bad.star" in msg and "row 2" in msg and "rlnCoordinateY" in msg
    csv = tmp_path / "bad.csv"
    csv.write_text(f"x,y,z\n1,2,3\n4,5,{bad}\n")
    with pytest.raises(DataError, match=r"bad\.csv: row 3: z"):
        read_picks(csv)


def test_names_and_missing_columns(tmp_path: Path) -> None:
    star = write_picks(PARTICLES, tmp_path / "p.star", GEO)
    with pytest.raises(DataError, match=r"no picks for tomogram 'other'.*TS_01"):
        read_picks(star, "other.mrc")
    warp = tmp_path / "warp.star"  # Warp names tomograms TS_01.tomostar
    starfile.write({"particles": pd.DataFrame({"rlnTomoName": ["TS_01.tomostar"], "rlnCoordinateX": [1.0],
                                               "rlnCoordinateY": [2.0], "rlnCoordinateZ": [3.0]})}, warp)
    assert len(read_picks(warp, geometry=GEO)) == 1
    empty = tmp_path / "e.star"
    starfile.write({"particles": pd.DataFrame({"rlnAngleRot": [1.0]})}, empty)
    with pytest.raises(DataError, match="no loop with rlnCoordinateX"):
        read_picks(empty)

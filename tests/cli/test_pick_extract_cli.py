"""segment -> pick -> extract: label map to RELION picks to a dataset folder, through the CLI."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from voxuda.cli import main
from voxuda.data.extract import read_picks
from voxuda.data.mrc import VolumeInfo, read_volume, write_labels, write_volume
from voxuda.data.picking import find_particles

# planted particles: centre (z, y, x) and radius in voxels
BALLS = [((10, 12, 30), 4), ((25, 40, 14), 3), ((30, 20, 45), 5)]
SHAPE = (40, 52, 60)
INFO = VolumeInfo((8.0, 8.0, 8.0), (80.0, -16.0, 40.0))


def _label_map() -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    labels = np.zeros(SHAPE, np.int8)
    for (cz, cy, cx), r in BALLS:
        labels[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r] = 1
    labels[2, 2, 2] = 1  # a one-voxel speck: noise a size filter must drop
    labels[35:37, 50:52, 2:4] = 2  # a second class
    return labels


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    labels = _label_map()
    tomo = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32) - 3.0 * (labels == 1)
    return {
        "labels": write_labels(tmp_path / "tomo_labels.mrc", labels, INFO),
        "tomogram": write_volume(tmp_path / "tomo.mrc", tomo, INFO),
    }


def test_components_are_found_at_the_planted_centres() -> None:
    found = find_particles(_label_map(), class_values=(1,), min_voxels=10)
    assert len(found) == len(BALLS)
    for particle in found:
        dist = [np.hypot(np.hypot(particle.z - c[0], particle.y - c[1]), particle.x - c[2]) for c, _ in BALLS]
        assert min(dist) < 0.01
    assert [p.voxels for p in found] == sorted((p.voxels for p in found), reverse=True)
    everything = find_particles(_label_map())
    assert len(everything) == len(BALLS) + 2 and {p.class_value for p in everything} == {1, 2}
    # 6-connectivity splits a diagonal pair that 26-connectivity keeps together
    pair = np.zeros((4, 4, 4), np.int8)
    pair[1, 1, 1] = pair[2, 2, 2] = 1
    assert len(find_particles(pair, connectivity=26)) == 1 and len(find_particles(pair, connectivity=6)) == 2


def test_pick_then_extract_round_trip(files: dict[str, Path], tmp_path: Path) -> None:
    star = tmp_path / "picks.star"
    assert main(["pick", str(files["labels"]), "-o", str(star), "--class-value", "1", "--min-voxels", "10",
                 "--tomo-name", "tomo"]) == 0
    picks = read_picks(star, "tomo.mrc")
    assert len(picks) == len(BALLS)
    got = sorted((round(p.z), round(p.y), round(p.x)) for p in picks)
    assert got == sorted(c for c, _ in BALLS)
    out = tmp_path / "dataset"
    assert main(["extract", str(files["tomogram"]), str(star), "--out", str(out), "--box", "16",
                 "--border", "pad"]) == 0
    manifest = (out / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 1 + len(BALLS) and "train" in manifest[1] and "target" in manifest[1]
    first = out / manifest[1].split(",")[manifest[0].split(",").index("volume")]
    vol, info = read_volume(first)
    assert vol.shape == (16, 16, 16) and info.voxel_size == INFO.voxel_size
    assert vol[8, 8, 8] < -1.0  # the (dark) particle sits at the box centre
    with mrcfile.open(first, permissive=False) as mrc:
        assert mrc.voxel_size.x == pytest.approx(8.0)


def test_csv_picks_carry_physical_coordinates(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "picks.csv"
    args = ["pick", str(files["labels"]), "-o", str(out), "--min-voxels", "10", "--max-voxels", "300"]
    assert main(args) == 0
    rows = [line.split(",") for line in out.read_text().splitlines()]
    header, body = rows[0], rows[1:]
    assert header[:5] == ["x", "y", "z", "class", "voxels"]
    assert all(10 <= int(r[4]) <= 300 for r in body) and len(body) == 2  # the r=5 ball has 515 voxels
    for r in body:  # x_angstrom = origin x + x * voxel size
        assert float(r[5]) == pytest.approx(40.0 + 8.0 * float(r[0]), abs=0.06)


def test_bad_inputs_are_one_line_errors_and_leave_no_file(files: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    star = tmp_path / "picks.star"
    assert main(["pick", str(tmp_path / "missing.mrc"), "-o", str(star)]) == 2
    assert main(["pick", str(files["labels"]), "-o", str(tmp_path / "picks.txt")]) == 2
    assert main(["pick", str(files["labels"]), "-o", str(tmp_path / "no" / "picks.star")]) == 2
    assert main(["pick", str(files["labels"]), "-o", str(star), "--min-voxels", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("voxuda: error: ") for line in err)
    assert "missing.mrc" in err[0] and ".star or .csv" in err[1] and "does not exist" in err[2]
    assert not star.exists() and not list(tmp_path.glob(".*tmp*"))
    assert main(["extract", str(files["tomogram"]), str(tmp_path / "x.csv"), "--out", str(tmp_path / "b"),
                 "--box", "0"]) == 2
    assert "box must be at least 1, got 0" in capsys.readouterr().err and not (tmp_path / "b").exists()
    # picks made on another tomogram: named, not silently empty
    assert main(["pick", str(files["labels"]), "-o", str(star), "--tomo-name", "other_tomo"]) == 0
    assert main(["extract", str(files["tomogram"]), str(star), "--out", str(tmp_path / "ds")]) == 2
    assert "other_tomo" in capsys.readouterr().err

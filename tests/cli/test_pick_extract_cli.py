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


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("voxuda: error: "), err
    return err[0]


@pytest.mark.parametrize("relion", ["4", "5"])
def test_readme_chain_pick_with_tomogram_then_extract(files: dict[str, Path], tmp_path: Path,
                                                      relion: str) -> None:
    """The README chain: voxuda pick labels.mrc --tomogram tomogram.mrc ...; voxuda extract ..."""
    star = tmp_path / "picks.star"
    assert main(["pick", str(files["labels"]), "--tomogram", str(files["tomogram"]), "-o", str(star),
                 "--min-voxels", "50", "--relion", relion]) == 0
    out = tmp_path / "my_target"
    assert main(["extract", str(files["tomogram"]), str(star), "--out", str(out), "--box", "8",
                 "--no-progress"]) == 0
    rows = (out / "manifest.csv").read_text().splitlines()[1:]
    assert len(rows) == len(BALLS)
    for row in rows:
        vol, _ = read_volume(out / row.split(",")[9])
        assert vol[4, 4, 4] < -1.0  # each dark ball sits at its box centre, in either RELION convention


def test_binned_picks_and_labels_through_the_cli(files: dict[str, Path], tmp_path: Path) -> None:
    picks = tmp_path / "bin1.csv"  # picks made on a tomogram twice as finely sampled
    picks.write_text("x,y,z,class\n" + "".join(f"{2 * x},{2 * y},{2 * z},ball\n" for (z, y, x), _ in BALLS))
    out = tmp_path / "src"
    assert main(["extract", str(files["tomogram"]), str(picks), "--out", str(out), "--box", "8",
                 "--picks-binning", "2", "--labels", str(files["labels"]), "--domain", "source",
                 "--no-progress"]) == 0
    manifest = tmp_path / "src" / "manifest.csv"
    header, *rows = [r.split(",") for r in manifest.read_text().splitlines()]
    assert len(rows) == len(BALLS) and all(r[header.index("label")].endswith("_label.mrc") for r in rows)
    from voxuda.data.mrc import read_labels

    assert all(read_labels(out / r[header.index("label")])[0][4, 4, 4] == 1 for r in rows)


def test_manifest_command(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "polnet"
    for sub in ("volumes", "labels"):
        (folder / sub).mkdir(parents=True)
    z, y, x = np.indices((16, 16, 16))
    for i in range(4):
        ball = ((z - 8) ** 2 + (y - 8) ** 2 + (x - 8) ** 2 <= (3 + i) ** 2).astype(np.int8)
        write_volume(folder / "volumes" / f"t{i}.mrc", ball.astype(np.float32), INFO)
        write_labels(folder / "labels" / f"t{i}.mrc", ball, INFO)
    assert main(["manifest", str(folder), "--val", "0.25", "--polarity", "bright"]) == 0
    assert "4 volumes (4 with labels; train 3, val 1)" in capsys.readouterr().out
    from voxuda.data.manifest import read_manifest

    rows = read_manifest(folder / "manifest.csv")
    assert [r.label.name for r in rows if r.label] == [f"t{i}.mrc" for i in range(4)]
    assert {r.voxel_size for r in rows} == {8.0} and {r.domain for r in rows} == {"source"}
    err = _one_error(capsys, ["manifest", str(folder)])
    assert "exists" in err and "--force" in err
    lone = tmp_path / "lone"
    lone.mkdir()
    write_labels(lone / "x_label.mrc", np.zeros((4, 4, 4), np.int8), INFO)
    assert "without a volume" in _one_error(capsys, ["manifest", str(lone)])
    assert sorted(p.name for p in lone.iterdir()) == ["x_label.mrc"]


def test_bad_real_world_inputs_give_one_line_and_no_output(files: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    tomo = files["tomogram"]
    out = tmp_path / "ds"
    stack = tmp_path / "TS_01.st"
    stack.write_bytes(tomo.read_bytes())
    assert "tilt series" in _one_error(capsys, ["extract", str(stack), "--grid", "--out", str(out)])
    raw = bytearray(tomo.read_bytes())
    raw[4:8] = np.int32(-52).tobytes()
    negative = tmp_path / "negative.mrc"
    negative.write_bytes(bytes(raw))
    assert "negative" in _one_error(capsys, ["extract", str(negative), "--grid", "--out", str(out)])
    zero = tmp_path / "zero_px.mrc"
    with mrcfile.new(zero) as m:
        m.set_data(np.zeros((16, 16, 16), np.float32))
        m.voxel_size = 0.0
    capsys.readouterr()
    assert main(["extract", str(zero), "--grid", "--box", "8", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("voxuda: error: ") and "--voxel-size" in err[-1] and "implausible" in err[0]
    nan = tmp_path / "nan.csv"
    nan.write_text("x,y,z\n10,10,10\n12,nan,10\n")
    err = _one_error(capsys, ["extract", str(tomo), str(nan), "--out", str(out)])
    assert "nan.csv" in err and "row 3" in err
    r5 = tmp_path / "r5.star"
    r5.write_text("data_particles\nloop_\n_rlnCenteredCoordinateXAngst\n_rlnCenteredCoordinateYAngst\n"
                  "_rlnCenteredCoordinateZAngst\n0 0 0\n")
    assert "RELION 5" in _one_error(capsys, ["extract", str(tomo), str(r5), "--out", str(out),
                                             "--picks-binning", "2"])
    assert "exactly one" in _one_error(capsys, ["extract", str(tomo), "--out", str(out)])
    err = _one_error(capsys, ["pick", str(files["labels"]), "--tomogram", str(tomo), "-o",
                              str(tmp_path / "missing" / "picks.star")])
    assert "does not exist" in err
    assert not out.exists() and not list(tmp_path.glob(".*"))

"""``voxuda simulate --tomogram``: one whole tomogram whose labels and true positions agree with each other,
deterministic by seed, with the pixel size, polarity and byte format asked for, written atomically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from voxuda.cli import main
from voxuda.data.mrc import IMOD_STAMP, read_labels, read_volume
from voxuda.data.picking import read_picks
from voxuda.errors import ConfigError
from voxuda.simulate.presets import get_preset
from voxuda.simulate.structures import load_template
from voxuda.simulate.tomogram import simulate_tomogram

SHAPE = (32, 48, 56)


def _domain(name: str):
    return next(d for d in get_preset("tiny").domains if d.name == name)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tomo") / "dense"
    res = simulate_tomogram(
        _domain("dense_cell"), out, shape=SHAPE, particles=8, voxel_size=13.48, seed=3, progress=False
    )
    return res


def test_files_share_geometry_and_pixel_size(dense) -> None:
    vol, vinfo = read_volume(dense.tomogram)
    lab, linfo = read_labels(dense.labels)
    assert vol.shape == lab.shape == SHAPE
    assert vinfo == linfo and vinfo.voxel_size == pytest.approx((13.48,) * 3)
    meta = json.loads((dense.folder / "tomogram.json").read_text())
    assert meta["particles"] == dense.particles >= 4 and meta["voxel_size"] == 13.48
    assert not list(dense.folder.parent.glob(".*partial*"))


def test_true_positions_are_where_the_labels_are(dense) -> None:
    """Each STAR centre (the template's centre, as subtomogram averaging uses it) lies within half a radius
    of the centroid of its class's voxels nearby, and every labelled voxel belongs to exactly one listed
    particle (no overlap, nothing outside the volume)."""
    lab, _ = read_labels(dense.labels)
    picks = read_picks(dense.particles_star, "tomogram")
    meta = json.loads((dense.folder / "tomogram.json").read_text())
    assert len(picks) == dense.particles
    zz, yy, xx = np.indices(lab.shape)
    claimed = np.zeros(lab.shape, bool)
    for p in picks:
        name = meta["classes"][p.class_name]
        r = load_template(name).radius / 13.48 + 1.0
        near = (zz - p.z) ** 2 + (yy - p.y) ** 2 + (xx - p.x) ** 2 <= r * r
        mine = near & (lab == int(p.class_name))
        assert mine.sum() > 0
        centroid = np.array([xx[mine].mean(), yy[mine].mean(), zz[mine].mean()])
        assert np.linalg.norm(centroid - [p.x, p.y, p.z]) < (r - 1.0) / 2
        assert not (claimed & mine).any()
        claimed |= mine
    assert np.array_equal(claimed, lab > 0)


def test_seeded_byte_identical_and_reused(dense, tmp_path: Path) -> None:
    again = simulate_tomogram(
        _domain("dense_cell"), tmp_path / "again", shape=SHAPE, particles=8, voxel_size=13.48, seed=3,
        progress=False,
    )
    assert _digests(again.folder) == _digests(dense.folder)
    stamp = again.tomogram.stat().st_mtime_ns
    third = simulate_tomogram(
        _domain("dense_cell"), tmp_path / "again", shape=SHAPE, particles=8, voxel_size=13.48, seed=3,
        progress=False,
    )
    assert third.reused and third.tomogram.stat().st_mtime_ns == stamp
    other = simulate_tomogram(
        _domain("dense_cell"), tmp_path / "other", shape=SHAPE, particles=8, voxel_size=13.48, seed=4,
        progress=False,
    )
    assert _digests(other.folder)["labels.mrc"] != _digests(dense.folder)["labels.mrc"]


def test_polarity_sets_the_sign_of_protein_contrast(tmp_path: Path) -> None:
    contrast = {}
    for polarity in ("dark", "bright"):
        res = simulate_tomogram(
            _domain("source"), tmp_path / polarity, shape=(24, 32, 32), particles=6, polarity=polarity,
            seed=1, progress=False,
        )
        vol, _ = read_volume(res.tomogram)
        lab, _ = read_labels(res.labels)
        contrast[polarity] = (vol[lab > 0].mean() - vol[lab == 0].mean()) / vol.std()
        assert res.polarity == polarity
    assert contrast["dark"] < -0.2 and contrast["bright"] > 0.2


def test_imod_bytes_are_unsigned_and_stamped(dense, tmp_path: Path) -> None:
    res = simulate_tomogram(
        _domain("dense_cell"), tmp_path / "bytes", shape=SHAPE, particles=8, voxel_size=13.48, seed=3,
        imod_bytes=True, progress=False,
    )
    raw = res.tomogram.read_bytes()
    assert int.from_bytes(raw[12:16], "little") == 0  # mode 0
    assert int.from_bytes(raw[152:156], "little") == IMOD_STAMP
    assert int.from_bytes(raw[156:160], "little") & 1 == 0  # unsigned
    with mrcfile.open(res.tomogram, permissive=False) as mrc:
        as_bytes = np.asarray(mrc.data).view(np.uint8).astype(np.float64)
        assert float(mrc.header.dmax) == as_bytes.max() and float(mrc.header.dmin) == as_bytes.min()
        assert tuple(float(v) for v in mrc.voxel_size.tolist()) == pytest.approx((13.48,) * 3)
    assert as_bytes.min() == 0 and as_bytes.max() == 255
    read_back, _ = read_volume(res.tomogram)  # voxuda honours IMOD's unsigned flag
    assert np.array_equal(read_back, as_bytes.astype(np.float32))
    floats, _ = read_volume(dense.tomogram)  # the same seed written as float32
    assert np.corrcoef(as_bytes.ravel(), floats.ravel())[0, 1] > 0.99
    assert _digests(res.folder)["labels.mrc"] == _digests(dense.folder)["labels.mrc"]


def test_bad_requests_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--shape"):
        simulate_tomogram(_domain("source"), tmp_path / "x", shape=(4, 32, 32), progress=False)
    with pytest.raises(ConfigError, match="--voxel-size"):
        simulate_tomogram(_domain("source"), tmp_path / "x", voxel_size=0.0, progress=False)
    assert not (tmp_path / "x").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a voxuda simulated-tomogram folder"):
        simulate_tomogram(_domain("source"), foreign, shape=(16, 16, 16), particles=1, progress=False)
    assert (foreign / "mine.txt").read_text() == "keep"


def test_cli_preset_file_domain_and_one_line_errors(tmp_path: Path, capsys) -> None:
    preset = tmp_path / "mine.toml"
    preset.write_text(
        'base = "tiny"\nname = "mine"\n[[targets]]\nname = "lab_scope"\nfrom = "insitu_ribosome"\n'
        "voxel_size = [20.0, 20.0]\n"
    )
    out = tmp_path / "t"
    assert main(["simulate", "--preset", str(preset), "--tomogram", "lab_scope", "--shape", "8", "8", "8",
                 "--voxel-size", "5", "--out", str(out)]) == 2
    assert "no particle of domain 'lab_scope' fits at 5.00 Å/px" in capsys.readouterr().err
    assert not out.exists()
    argv = ["simulate", "--preset", str(preset), "--tomogram", "lab_scope", "--shape", "16", "24", "24",
            "--particles", "3", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "tomogram 'lab_scope' 16x24x24 at 20.00 A/px, dark protein" in capsys.readouterr().out
    assert read_volume(out / "tomogram.mrc")[1].voxel_size == pytest.approx((20.0,) * 3)
    assert main(["simulate", "--tomogram", "nope", "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no such domain" in err and "dense_cell" in err
    assert main(["simulate", "--preset", "tiny", "--polarity", "bright", "--out", str(tmp_path / "b")]) == 2
    assert "only apply with --tomogram" in capsys.readouterr().err
    assert not (tmp_path / "n").exists() and not (tmp_path / "b").exists()

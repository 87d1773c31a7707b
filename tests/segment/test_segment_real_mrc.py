"""segment on real-world MRC files: tilt stacks and bad dimensions refused, --voxel-size overrides."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from voxuda.cli import main


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("voxuda: error: "), err
    return err[0]


def test_tilt_stack_and_bad_dimensions_are_refused(planted, trained_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    tomo, _ = planted
    stack = tmp_path / "TS_01.st"
    stack.write_bytes(Path(tomo).read_bytes())
    out = tmp_path / "labels.mrc"
    err = _error(capsys, ["segment", str(trained_run), str(stack), "-o", str(out), "--no-progress"])
    assert "TS_01.st" in err and "tilt series" in err
    negative = tmp_path / "negative.mrc"
    raw = bytearray(Path(tomo).read_bytes())
    raw[8:12] = np.int32(-64).tobytes()
    negative.write_bytes(bytes(raw))
    err = _error(capsys, ["segment", str(trained_run), str(negative), "-o", str(out), "--no-progress"])
    assert "negative.mrc" in err and "negative" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["TS_01.st", "negative.mrc"]


def test_voxel_size_overrides_a_wrong_header(planted, trained_run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    tomo, _ = planted
    unset = tmp_path / "unset.mrc"
    raw = bytearray(Path(tomo).read_bytes())
    raw[40:52] = np.zeros(3, np.float32).tobytes()  # cell lengths 0: pixel size 0 Å, as unset headers say
    unset.write_bytes(bytes(raw))
    base = ["segment", str(trained_run), str(unset), "--no-progress", "--patch", "16"]
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "a.mrc")]) == 0
    assert "implausible" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "b.mrc"), "--voxel-size", "10"]) == 0
    assert "implausible" not in capsys.readouterr().err
    with mrcfile.open(tmp_path / "b.mrc") as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(10.0)

"""``voxuda segment`` applies the run's input alignment to every normalised window (the target domain)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from tests.segment.synthetic import ThresholdPredictor, dice, planted_tomogram, write_mrc
from voxuda.cli import main
from voxuda.config import dump_toml, load_toml
from voxuda.segment import LoadedModel, SegmentError, load_model, segment_tomogram
from voxuda.segment.preprocess import Preprocessing

SHAPE = (48, 64, 64)
DETREND = {"aligner": {"name": "detrend", "order": 1}, "state": {}}


@pytest.fixture(scope="module")
def ramped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """Planted particles plus an intensity ramp along x (2 particle heights across the tomogram)."""
    volume, labels = planted_tomogram(SHAPE, seed=2)
    ramp = 2.0 * np.arange(SHAPE[2], dtype=np.float32) / SHAPE[2]
    return write_mrc(tmp_path_factory.mktemp("ramped") / "tomo.mrc", volume + ramp), labels


def _labels(path: Path) -> np.ndarray:
    with mrcfile.open(path) as mrc:
        return np.array(mrc.data)


def _aligned_run(trained_run: Path, folder: Path, record: dict | None) -> Path:  # type: ignore[type-arg]
    """A copy of the trained run folder as if it had been trained with ``record``'s alignment."""
    shutil.copytree(trained_run, folder)
    config = load_toml(folder / "config.toml")
    if record is not None:
        config["data"]["alignment"] = record["aligner"]
        (folder / "run.json").write_text(json.dumps({"alignment": record}), encoding="utf-8")
    (folder / "config.toml").write_text(dump_toml(config), encoding="utf-8")
    return folder


def test_recorded_detrend_rescues_windows_broken_by_a_ramp(ramped, tmp_path: Path) -> None:
    tomo, truth = ramped
    model = LoadedModel(predictor=ThresholdPredictor(), num_classes=2, alignment=DETREND)
    segment_tomogram(model, tomo, tmp_path / "aligned.mrc", patch=32, batch_size=8, progress=False)
    segment_tomogram(model, tomo, tmp_path / "raw.mrc", patch=32, batch_size=8, progress=False,
                     alignment="none")
    aligned, raw = dice(_labels(tmp_path / "aligned.mrc"), truth), dice(_labels(tmp_path / "raw.mrc"), truth)
    assert aligned > 0.8 and raw < 0.6, (aligned, raw)


def test_windows_are_aligned_after_normalisation() -> None:
    from voxuda.align import build_aligner

    generator = torch.Generator().manual_seed(0)
    windows = torch.randn(3, 1, 16, 16, 16, generator=generator) * 5 + 2
    windows += torch.linspace(0, 8, 16)  # a ramp along x
    prep = Preprocessing(aligner=build_aligner("detrend"))
    normalised = Preprocessing()(windows)
    expected = build_aligner("detrend").apply(normalised, "target")
    assert torch.equal(prep(windows), expected)
    x = torch.linspace(-1, 1, 16)
    slope = (prep(windows) * x).mean(dim=(1, 2, 3, 4))
    assert slope.abs().max() < 1e-5 < float((normalised * x).mean(dim=(1, 2, 3, 4)).abs().min())


def test_run_folder_alignment_is_read_and_applied_by_default(
        ramped, trained_run: Path, tmp_path: Path) -> None:
    tomo, truth = ramped
    run = _aligned_run(trained_run, tmp_path / "run", DETREND)
    assert load_model(run).alignment == DETREND
    base = ["segment", str(run), str(tomo), "--patch", "32", "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "default.mrc")]) == 0
    assert main([*base, "-o", str(tmp_path / "none.mrc"), "--alignment", "none"]) == 0
    default, off = _labels(tmp_path / "default.mrc"), _labels(tmp_path / "none.mrc")
    assert dice(default, truth) > dice(off, truth) + 0.1, (dice(default, truth), dice(off, truth))
    # a run trained without alignment can be given one explicitly, with parameters
    plain = ["segment", str(trained_run), str(tomo), "--patch", "32", "--no-progress"]
    assert main([*plain, "-o", str(tmp_path / "explicit.mrc"), "--alignment", "detrend",
                 "--set", "alignment.order=1"]) == 0
    np.testing.assert_array_equal(_labels(tmp_path / "explicit.mrc"), default)


def test_fitted_aligner_uses_the_recorded_statistics_only(
        ramped, trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voxuda.align import alignment_record, build_aligner

    tomo, _ = ramped
    generator = torch.Generator().manual_seed(1)
    aligner = build_aligner("spectrum_match")
    aligner.fit(torch.randn(6, 1, 16, 16, 16, generator=generator),
                torch.randn(6, 1, 16, 16, 16, generator=generator).cumsum(dim=-1))
    record = json.loads(json.dumps(alignment_record("spectrum_match", aligner)))
    run = _aligned_run(trained_run, tmp_path / "run", record)
    base = ["segment", str(run), str(tomo), "--patch", "32", "--no-progress", "--probabilities"]
    assert main([*base, str(tmp_path / "p0.mrc"), "-o", str(tmp_path / "l0.mrc")]) == 0
    assert main([*base, str(tmp_path / "p1.mrc"), "-o", str(tmp_path / "l1.mrc"),
                 "--alignment", "spectrum_match"]) == 0
    assert main([*base, str(tmp_path / "p2.mrc"), "-o", str(tmp_path / "l2.mrc"),
                 "--alignment", "detrend"]) == 0
    with mrcfile.open(tmp_path / "p0.mrc") as a, mrcfile.open(tmp_path / "p1.mrc") as b:
        np.testing.assert_array_equal(a.data, b.data)
    with mrcfile.open(tmp_path / "p0.mrc") as a, mrcfile.open(tmp_path / "p2.mrc") as b:
        assert float(np.abs(a.data - b.data).max()) > 0.05  # the spectrum gain really ran
    capsys.readouterr()
    for argv in ([*base, str(tmp_path / "p3.mrc"), "-o", str(tmp_path / "l3.mrc"), "--alignment",
                  "spectrum_match", "--set", "alignment.max_gain=3"],
                 ["segment", str(trained_run), str(tomo), "-o", str(tmp_path / "l3.mrc"), "--alignment",
                  "spectrum_match"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("voxuda: error: --alignment spectrum_match: needs statistics")
        assert "\n" not in err
    assert not (tmp_path / "l3.mrc").exists()


def test_bad_alignment_options_are_one_line(ramped, trained_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    tomo, _ = ramped
    base = ["segment", str(trained_run), str(tomo), "-o", str(tmp_path / "l.mrc")]
    for extra, words in ((["--alignment", "detrand"], "did you mean 'detrend'"),
                         (["--set", "alignment.order=1"], "no --alignment named"),
                         (["--alignment", "detrend", "--set", "alignment.ordr=1"], "unknown key 'ordr'")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("voxuda: error: ") and words in err and "\n" not in err, err
    with pytest.raises(SegmentError, match="alignment"):
        segment_tomogram(LoadedModel(predictor=ThresholdPredictor(), num_classes=2), tomo, tmp_path / "x.mrc",
                         alignment="spectrum_match", progress=False)

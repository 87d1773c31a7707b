"""``segment --fg-prior``: labels by a foreground threshold calibrated on the tomogram itself."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tests.segment.synthetic import ThresholdPredictor, dice
from voxuda.cli import main
from voxuda.engine.decision import threshold_from_histogram
from voxuda.segment import segment_tomogram


def _read(path: Path) -> np.ndarray:
    with mrcfile.open(path) as mrc:
        return np.array(mrc.data)


def test_a_prior_recovers_an_under_segmenting_models_particles(planted, tmp_path: Path) -> None:
    tomo, truth = planted
    true_fraction = float((truth > 0).mean())
    under = ThresholdPredictor(threshold=1.0)  # calls only the particles' cores
    plain = segment_tomogram(under, tomo, tmp_path / "argmax.mrc", patch=32, progress=False)
    notes: list[str] = []
    prior = (0.7 * true_fraction, 1.4 * true_fraction)
    result = segment_tomogram(under, tomo, tmp_path / "prior.mrc", patch=32, progress=False,
                              probabilities=tmp_path / "p.mrc", fg_prior=prior, log=notes.append)
    argmax, calibrated, p_fg = _read(plain.labels), _read(result.labels), _read(tmp_path / "p.mrc")
    assert (argmax > 0).mean() < 0.5 * prior[0]  # the argmax under-segments
    assert (calibrated > 0).mean() == pytest.approx(prior[0], rel=0.01)  # raised to the range's bound
    assert dice(calibrated, truth) > dice(argmax, truth) + 0.2
    assert p_fg[calibrated > 0].min() >= p_fg[calibrated == 0].max()  # one threshold for every voxel
    assert "--fg-prior" in notes[-1] and "argmax called" in notes[-1]
    # the scratch maps are gone; only the outputs remain
    assert sorted(x.name for x in tmp_path.iterdir()) == ["argmax.mrc", "p.mrc", "prior.mrc"]


def test_inside_the_range_the_labels_are_argmax(planted, tmp_path: Path) -> None:
    tomo, _ = planted
    plain = segment_tomogram(ThresholdPredictor(), tomo, tmp_path / "a.mrc", patch=32, progress=False)
    wide = segment_tomogram(ThresholdPredictor(), tomo, tmp_path / "b.mrc", patch=32, progress=False,
                            fg_prior=(0.0, 1.0))
    np.testing.assert_array_equal(_read(plain.labels), _read(wide.labels))


def test_histogram_threshold_calls_the_asked_share() -> None:
    values = np.random.default_rng(0).random(200_000).astype(np.float32)
    counts = np.bincount(np.minimum((values * 4096).astype(np.int64), 4095), minlength=4096)
    for fraction in (0.0, 0.03, 0.5, 1.0):
        t = threshold_from_histogram(counts, fraction)
        assert (values > t).mean() == pytest.approx(fraction, abs=1 / 4096 + 1e-6)


def test_a_bad_range_stops_with_one_line(planted, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         trained_run: Path) -> None:
    tomo, _ = planted
    out = tmp_path / "labels.mrc"
    code = main(["segment", str(trained_run), str(tomo), "-o", str(out), "--fg-prior", "0.5", "0.1",
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "fg_prior 0.5 0.1" in err[0]
    assert not out.exists()

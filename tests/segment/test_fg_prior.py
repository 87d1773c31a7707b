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


def _fraction_from_note(note: str) -> float:
    """The estimated percentage in the ``--prior-estimate em`` log line, as a fraction."""
    assert note.startswith("--prior-estimate em")
    return float(note.split(": ", 1)[1].split(" %")[0]) / 100


def test_the_em_estimate_reads_out_at_the_tomograms_estimated_fraction(planted, tmp_path: Path) -> None:
    tomo, _ = planted
    under = ThresholdPredictor(threshold=1.0)
    plain = segment_tomogram(under, tomo, tmp_path / "argmax.mrc", patch=32, progress=False,
                             probabilities=tmp_path / "p.mrc")
    mean_p = float(_read(tmp_path / "p.mrc").astype(np.float64).mean())
    # posteriors whose prior is the tomogram's own mean p_fg: EM stays there, and so many voxels are called
    notes: list[str] = []
    same = segment_tomogram(under, tomo, tmp_path / "same.mrc", patch=32, progress=False,
                            prior_estimate="em", source_soft=mean_p, log=notes.append)
    assert _fraction_from_note(notes[-1]) == pytest.approx(mean_p, rel=0.01)
    assert (_read(same.labels) > 0).mean() == pytest.approx(mean_p, rel=0.02)
    # learned where foreground was rarer: the tomogram is estimated more crowded than its mean p_fg says
    notes.clear()
    rarer = segment_tomogram(under, tomo, tmp_path / "rarer.mrc", patch=32, progress=False,
                             prior_estimate="em", source_soft=mean_p / 3, log=notes.append)
    estimate = _fraction_from_note(notes[-1])
    assert estimate > 1.2 * mean_p
    assert (_read(rarer.labels) > 0).mean() == pytest.approx(estimate, rel=0.02)
    assert (_read(rarer.labels) > 0).mean() > (_read(plain.labels) > 0).mean()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["argmax.mrc", "p.mrc", "rarer.mrc", "same.mrc"]


def test_the_histogram_em_agrees_with_the_em_on_the_voxels() -> None:
    import torch

    from voxuda.engine.decision import SourceCalibration, em_foreground_prior, estimate_from_histogram

    p = torch.distributions.Beta(0.3, 6.0).sample((300_000,), ).double()
    counts = np.bincount(np.minimum((p.numpy() * 65536).astype(np.int64), 65535), minlength=65536)
    exact, _, _ = em_foreground_prior(p, 0.02)
    binned = estimate_from_histogram(counts, SourceCalibration(source_soft=0.02))
    assert binned.converged and binned.estimate == pytest.approx(exact, rel=1e-3)
    assert binned.target_soft == pytest.approx(float(p.mean()), rel=1e-3)


def test_an_estimate_without_a_source_prior_stops_with_one_line(planted, tmp_path: Path, trained_run: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    tomo, _ = planted
    out = tmp_path / "labels.mrc"
    cases = [
        (["--prior-estimate", "em"], "cannot measure the network's prior"),  # the run has no dataset on disk
        (["--prior-estimate", "em", "--fg-prior", "0.1", "0.2"], "fg_prior and prior_estimate"),
        (["--source-soft", "0.02"], "needs prior_estimate em"),
        (["--prior-estimate", "em_calibrated"], "cannot measure the network's prior"),
        (["--prior-estimate", "em_calibrated", "--source-soft", "0.02"], "needs prior_estimate em"),
        (["--prior-estimate", "em", "--source-soft", "1.5"], "source_soft 1.5"),
    ]
    for extra, message in cases:
        code = main(["segment", str(trained_run), str(tomo), "-o", str(out), "--no-progress", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and message in err[0], (extra, err)
        assert not out.exists()
    assert main(["segment", str(trained_run), str(tomo), "-o", str(out), "--no-progress",
                 "--prior-estimate", "em", "--source-soft", "0.02"]) == 0
    assert "--prior-estimate em:" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["em", "em_calibrated"])
def test_a_run_with_its_dataset_measures_its_own_source_prior(planted, tmp_path: Path, tiny_dataset: Path,
                                                              method: str) -> None:
    from tests.conftest import tiny_run_dict
    from voxuda.engine.pipeline import train_and_evaluate
    from voxuda.engine.run_config import run_config_from_dict

    tomo, _ = planted
    run = tmp_path / "run"
    train_and_evaluate(run_config_from_dict(tiny_run_dict(tiny_dataset, steps=2)), run)
    notes: list[str] = []
    result = segment_tomogram(run, tomo, tmp_path / "labels.mrc", patch=16, progress=False,
                              prior_estimate=method, log=notes.append)
    line = next(n for n in notes if n.startswith(f"--prior-estimate {method}:"))
    source_soft = float(line.split("here, ")[1].split(" %")[0]) / 100
    assert 0 < source_soft < 1  # measured on the run's held-out source split
    assert (_read(result.labels) > 0).mean() == pytest.approx(_fraction_from_note(line), abs=0.01)

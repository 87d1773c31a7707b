"""End to end: ``segment_tomogram`` and ``voxuda segment`` on a planted-particle tomogram."""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tests.segment.conftest import ORIGIN, TOMO_SHAPE, VOXEL
from tests.segment.synthetic import ThresholdPredictor, dice, planted_tomogram, write_mrc
from voxuda.cli import main
from voxuda.segment import SegmentError, segment_tomogram


def _header(path: Path) -> tuple[tuple[int, ...], int, tuple[float, ...], tuple[float, ...]]:
    with mrcfile.open(path) as mrc:
        vs, org = mrc.voxel_size, mrc.header.origin
        return (mrc.data.shape, int(mrc.header.mode), (float(vs.z), float(vs.y), float(vs.x)),
                (float(org.z), float(org.y), float(org.x)))


def _valid(path: Path) -> bool:
    with open(os.devnull, "w") as sink:
        return bool(mrcfile.validate(path, print_file=sink))


def test_handcrafted_predictor_segments_the_planted_particles(planted, tmp_path: Path) -> None:
    tomo, truth = planted
    out, prob = tmp_path / "labels.mrc", tmp_path / "prob.mrc"
    result = segment_tomogram(ThresholdPredictor(), tomo, out, probabilities=prob, patch=32, batch_size=8,
                              progress=False)
    assert result.shape == TOMO_SHAPE and result.windows == 3 * 5 * 4
    assert _header(out) == (TOMO_SHAPE, 0, VOXEL, ORIGIN)
    assert _header(prob) == (TOMO_SHAPE, 2, VOXEL, ORIGIN)
    assert _valid(out) and _valid(prob)
    with mrcfile.open(out) as mrc:
        labels = np.array(mrc.data)
    with mrcfile.open(prob) as mrc:
        p = np.array(mrc.data)
    assert set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (p > 0.5).astype(np.int8))
    assert dice(labels, truth) > 0.8
    assert sorted(x.name for x in tmp_path.iterdir()) == ["labels.mrc", "prob.mrc"]


def test_trained_run_folder_segments_with_good_dice(planted, trained_run: Path, tmp_path: Path) -> None:
    tomo, truth = planted
    out = tmp_path / "labels.mrc"
    argv = ["segment", str(trained_run), str(tomo), "-o", str(out), "--patch", "32", "--no-progress"]
    assert main(argv) == 0
    assert _header(out) == (TOMO_SHAPE, 0, VOXEL, ORIGIN)
    assert _valid(out)
    with mrcfile.open(out) as mrc:
        score = dice(mrc.data, truth)
    assert score > 0.8, score
    # the checkpoint file itself works as well, and inverting the contrast destroys the result
    inv = tmp_path / "inverted.mrc"
    segment_tomogram(trained_run / "last.pt", tomo, inv, invert=True, progress=False)
    with mrcfile.open(inv) as mrc:
        assert dice(mrc.data, truth) < 0.3


def test_resampling_to_the_model_voxel_size_and_back(trained_run: Path, tmp_path: Path) -> None:
    """The same particles at 30 Å voxels (radius ~1.3 voxels): resampled 3x up for a model trained at 10 Å
    (radius ~4), then back; without resampling the model misses the tiny particles."""
    volume, truth = planted_tomogram((64, 96, 80), seed=0)
    coarse, coarse_truth = volume[::3, ::3, ::3].copy(), truth[::3, ::3, ::3]
    tomo = write_mrc(tmp_path / "coarse.mrc", coarse, (30.0, 30.0, 30.0), (1.0, 2.0, 3.0))
    out = tmp_path / "labels.mrc"
    plain = segment_tomogram(trained_run, tomo, tmp_path / "plain.mrc", progress=False)
    result = segment_tomogram(trained_run, tomo, out, model_voxel_size=10.0, progress=False)
    assert plain.working_shape == coarse.shape and result.working_shape == (66, 96, 81)
    assert any("resampling" in n for n in result.notes)
    assert _header(out) == (coarse.shape, 0, (30.0, 30.0, 30.0), (1.0, 2.0, 3.0))
    assert _valid(out)
    with mrcfile.open(out) as a, mrcfile.open(tmp_path / "plain.mrc") as b:
        resampled, unresampled = dice(a.data, coarse_truth), dice(b.data, coarse_truth)
    assert resampled > 0.5 and resampled > unresampled + 0.15, (resampled, unresampled)


def test_tomogram_smaller_than_a_patch_is_padded(trained_run: Path, tmp_path: Path) -> None:
    volume, _ = planted_tomogram((5, 20, 11), seed=3, spacing=10)
    tomo = write_mrc(tmp_path / "small.mrc", volume)
    out = tmp_path / "small_labels.mrc"
    segment_tomogram(trained_run, tomo, out, patch=32, progress=False)
    assert _header(out)[:2] == ((5, 20, 11), 0)
    assert _valid(out)


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("voxuda: error: ") and "\n" not in err, err
    return err


def test_bad_inputs_give_one_line_and_no_partial_file(planted, trained_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    tomo, _ = planted
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    flat = tmp_path / "flat.mrc"
    with mrcfile.new(flat) as mrc:
        mrc.set_data(np.zeros((16, 16), dtype=np.float32))
    err = _cli_error(capsys, ["segment", str(trained_run), str(flat), "-o", str(out_dir / "a.mrc")])
    assert "3-D" in err and "flat.mrc" in err
    missing = tmp_path / "missing" / "a.mrc"
    err = _cli_error(capsys, ["segment", str(trained_run), str(tomo), "-o", str(missing)])
    assert "does not exist" in err
    err = _cli_error(capsys, ["segment", str(trained_run), str(tomo), "-o", str(out_dir / "a.mrc"),
                              "--patch", "15"])
    assert "multiple of 2" in err
    err = _cli_error(capsys, ["segment", str(tmp_path / "nope"), str(tomo), "-o", str(out_dir / "a.mrc")])
    assert "no such run folder" in err
    assert list(out_dir.iterdir()) == []
    assert not (tmp_path / "missing").exists()


def test_checkpoint_from_another_backbone_is_refused(trained_run: Path, tmp_path: Path, planted,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from tests.segment.conftest import write_run
    from voxuda.api import build_method

    config = {"method": {"name": "source_only", "backbone": {"name": "voxresnet"}}}
    other = write_run(tmp_path / "other", build_method(config["method"]), config)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "config.toml").write_text((trained_run / "config.toml").read_text())
    (mixed / "last.pt").write_bytes((other / "last.pt").read_bytes())
    tomo, _ = planted
    err = _cli_error(capsys, ["segment", str(mixed), str(tomo), "-o", str(tmp_path / "x.mrc")])
    assert "does not fit" in err and "'unet3d'" in err and "missing" in err
    assert not (tmp_path / "x.mrc").exists()
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "config.toml").write_text((trained_run / "config.toml").read_text())
    (garbage / "last.pt").write_bytes(b"not a checkpoint")
    err = _cli_error(capsys, ["segment", str(garbage), str(tomo), "-o", str(tmp_path / "x.mrc")])
    assert "not a readable checkpoint" in err


def test_failure_mid_run_removes_the_temporary_outputs(planted, tmp_path: Path) -> None:
    import torch

    calls = {"n": 0}

    class Exploding(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            if calls["n"] == 5:
                raise RuntimeError("boom")
            return torch.zeros(x.shape[0], 2, *x.shape[2:])

    tomo, _ = planted
    with pytest.raises(RuntimeError, match="boom"):
        segment_tomogram(Exploding(), tomo, tmp_path / "l.mrc", probabilities=tmp_path / "p.mrc",
                         batch_size=2, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SegmentError, match="differ"):
        segment_tomogram(Exploding(), tomo, tomo, progress=False)


def test_input_denoiser_by_name_with_parameters(planted, trained_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    tomo, truth = planted
    base = ["segment", str(trained_run), str(tomo), "--no-progress", "--probabilities"]
    assert main([*base, str(tmp_path / "p0.mrc"), "-o", str(tmp_path / "l0.mrc")]) == 0
    assert main([*base, str(tmp_path / "p1.mrc"), "-o", str(tmp_path / "l1.mrc"),
                 "--input-denoiser", "gaussian", "--set", "input_denoiser.sigma=1.5"]) == 0
    with mrcfile.open(tmp_path / "p0.mrc") as a, mrcfile.open(tmp_path / "p1.mrc") as b:
        assert float(np.abs(a.data - b.data).max()) > 0.1  # the denoiser really ran
    with mrcfile.open(tmp_path / "l1.mrc") as mrc:
        assert dice(mrc.data, truth) > 0.6
    capsys.readouterr()
    err = _cli_error(capsys, [*base, str(tmp_path / "p2.mrc"), "-o", str(tmp_path / "l2.mrc"),
                              "--input-denoiser", "gausian"])
    assert "gaussian" in err  # did-you-mean
    err = _cli_error(capsys, [*base, str(tmp_path / "p2.mrc"), "-o", str(tmp_path / "l2.mrc"),
                              "--set", "method.x=1"])
    assert "input_denoiser" in err
    assert not (tmp_path / "l2.mrc").exists() and not (tmp_path / "p2.mrc").exists()


def test_tomogram_scope_normalisation_equals_a_globally_normalised_full_pass(planted, tmp_path: Path) -> None:
    import torch

    tomo, _ = planted
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 1), torch.nn.Tanh(), torch.nn.Conv3d(4, 2, 1)).eval()
    segment_tomogram(model, tomo, tmp_path / "l.mrc", probabilities=tmp_path / "p.mrc", scope="tomogram",
                     invert=True, progress=False)
    with mrcfile.open(tomo) as mrc:
        volume = -np.array(mrc.data, dtype=np.float64)
    normalised = ((volume - volume.mean()) / volume.std()).astype(np.float32)
    with torch.inference_mode():
        reference = torch.softmax(model(torch.from_numpy(normalised)[None, None]), 1)[0, 1].numpy()
    with mrcfile.open(tmp_path / "p.mrc") as mrc:
        np.testing.assert_allclose(mrc.data, reference, atol=1e-5)


def test_options_class_carries_the_options_and_keywords_change_single_ones(tmp_path: Path) -> None:
    """SegmentOptions holds what the 20 keywords held; a keyword replaces one option; a typo is refused."""
    from voxuda.segment import SegmentOptions
    from voxuda.segment.sliding import count_windows

    volume = np.random.default_rng(0).normal(size=(40, 40, 40)).astype(np.float32)
    tomo = write_mrc(tmp_path / "t.mrc", volume)
    options = SegmentOptions(patch=32, batch_size=8, progress=False)
    notes: list[str] = []
    result = segment_tomogram(ThresholdPredictor(), tomo, tmp_path / "a.mrc", options, overlap=0.25,
                              log=notes.append)
    assert result.windows == count_windows((40, 40, 40), 32, 0.25)  # the keyword's overlap, not 0.5
    assert options.overlap == 0.5  # the caller's options are not changed
    with pytest.raises(SegmentError, match="unknown segment option 'pach'"):
        segment_tomogram(ThresholdPredictor(), tomo, tmp_path / "b.mrc", options, pach=16)
    assert not (tmp_path / "b.mrc").exists()

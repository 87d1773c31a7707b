"""``voxuda evaluate-tomogram``: Dice and pick scores with known answers, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voxuda.cli import main
from voxuda.commands.evaluate_tomogram import dice, match_points, pick_scores, segmentation_scores
from voxuda.data.mrc import VolumeInfo, write_labels
from voxuda.data.picking import Particle, TomogramGeometry, write_picks

INFO = VolumeInfo.isotropic(10.0)


def test_dice_known_answers() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    assert dice(a, b) == 1.0  # nothing to find, nothing found
    a[0, :, :2] = True  # 8 voxels
    b[0, :, 1:3] = True  # 8 voxels, 4 shared
    assert dice(a, b) == pytest.approx(2 * 4 / 16)
    assert dice(a, np.zeros_like(a)) == 0.0


def test_per_class_recall_for_binary_seg_and_dice_for_class_seg() -> None:
    labels = np.zeros((2, 4, 4), np.int64)
    labels[0, :2] = 1  # 8 voxels of class 1
    labels[1, :1] = 2  # 4 voxels of class 2
    seg = (labels == 1).astype(np.int64)  # finds class 1 only
    scores = segmentation_scores(seg, labels, {1: "ribo"})
    assert scores["per_class_metric"] == "recall"
    assert scores["per_class"]["ribo"]["recall"] == 1.0 and scores["per_class"]["2"]["recall"] == 0.0
    assert scores["dice_foreground"] == pytest.approx(2 * 8 / (8 + 12))
    swapped = np.where(labels == 1, 2, np.where(labels == 2, 1, 0))
    by_class = segmentation_scores(swapped, labels)
    assert by_class["per_class_metric"] == "dice" and by_class["dice_foreground"] == 1.0
    assert by_class["per_class"]["1"]["dice"] == 0.0 == by_class["per_class"]["2"]["dice"]


def test_matching_maximises_pairs_where_greedy_nearest_would_not() -> None:
    """f0 is nearest to t0 (0.4); greedy shortest-first takes that pair and leaves f1 (only near t0)
    unmatched. The assignment pairs f0-t1 and f1-t0: two matches."""
    found = np.array([[0.0, 0, 0], [1.4, 0, 0]])
    true = np.array([[0.4, 0, 0], [-1.0, 0, 0]])
    pairs = sorted(match_points(found, true, 1.05))
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)]
    scores = pick_scores(np.vstack([found, [[50.0, 0, 0]]]), true, 1.05)
    assert (scores["matched"], scores["precision"], scores["recall"]) == (2, pytest.approx(2 / 3), 1.0)
    assert scores["f1"] == pytest.approx(0.8)
    assert pick_scores(found, true, 0.1)["matched"] == 0
    assert pick_scores(np.zeros((0, 3)), true, 5.0)["precision"] == 0.0


def _files(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    labels = np.zeros((8, 16, 16), np.int8)
    labels[2:6, 2:6, 2:6] = 1
    labels[2:6, 10:14, 10:14] = 2
    seg = np.zeros_like(labels)
    seg[2:6, 2:6, 2:6] = 1  # class 1 found, class 2 missed
    write_labels(tmp_path / "labels.mrc", labels, INFO)
    write_labels(tmp_path / "seg.mrc", seg, INFO)
    truth = [Particle(3.5, 3.5, 3.5, 64, 1), Particle(11.5, 11.5, 3.5, 64, 2)]
    picks = [Particle(4.5, 3.5, 3.5, 60, 1), Particle(3.5, 12.0, 6.0, 5, 1)]  # 10 Å off; a false pick
    geometry = TomogramGeometry("tomogram", labels.shape, INFO)
    write_picks(truth, tmp_path / "truth.star", geometry)
    write_picks(picks, tmp_path / "picks.star", geometry, relion=5)  # centred Å: read back to the same place
    return tmp_path / "seg.mrc", tmp_path / "labels.mrc", tmp_path / "picks.star", tmp_path / "truth.star"


def test_cli_scores_files(tmp_path: Path, capsys) -> None:
    seg, labels, picks, truth = _files(tmp_path)
    argv = ["evaluate-tomogram", str(seg), str(labels), "--picks", str(picks), "--truth", str(truth),
            "--distance", "15"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Dice (foreground) 0.6667" in out and "class 2 (2): recall 0.0000" in out
    assert "1 of 2 picks match one of 2 true positions within 15 Å" in out and "F1 0.500" in out
    assert main([*argv[:3], "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dice_foreground"] == pytest.approx(2 / 3) and "picks" not in result


def test_cli_one_line_errors(tmp_path: Path, capsys) -> None:
    seg, labels, picks, truth = _files(tmp_path)
    write_labels(tmp_path / "small.mrc", np.zeros((8, 16, 8), np.int8), INFO)
    assert main(["evaluate-tomogram", str(tmp_path / "small.mrc"), str(labels)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "small.mrc" in err and "labels.mrc" in err
    write_labels(tmp_path / "coarse.mrc", np.zeros((8, 16, 16), np.int8), VolumeInfo.isotropic(20.0))
    assert main(["evaluate-tomogram", str(tmp_path / "coarse.mrc"), str(labels)]) == 2
    assert "20.000 Å/px does not match" in capsys.readouterr().err
    no_distance = ["evaluate-tomogram", str(seg), str(labels), "--picks", str(picks), "--truth", str(truth)]
    assert main(no_distance) == 2
    assert "--distance" in capsys.readouterr().err
    assert main(["evaluate-tomogram", str(seg), str(labels), "--picks", str(picks)]) == 2
    assert "--picks and --truth go together" in capsys.readouterr().err


def test_truth_of_several_tomograms_needs_tomo_name(tmp_path: Path, capsys) -> None:
    import pandas as pd

    from voxuda.data.star import read_star, write_star

    seg, labels, picks, truth = _files(tmp_path)
    blocks = read_star(truth)
    other = blocks["particles"].assign(rlnTomoName="other", rlnCoordinateX=1.0)
    blocks["particles"] = pd.concat([blocks["particles"], other], ignore_index=True)
    write_star(blocks, tmp_path / "two.star")
    argv = ["evaluate-tomogram", str(seg), str(labels), "--picks", str(picks), "--truth",
            str(tmp_path / "two.star"), "--distance", "15"]
    assert main(argv) == 2
    assert "holds positions of 2 tomograms (other, tomogram); pass --tomo-name" in capsys.readouterr().err
    assert main([*argv, "--tomo-name", "tomogram", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["picks"]
    assert (scores["true"], scores["matched"]) == (2, 1)  # only this tomogram's positions count

"""Dice/IoU agree with scikit-learn on flattened voxels; per-class and per-volume bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, jaccard_score

from voxuda.engine.metrics import SegmentationMeter, confusion_matrix, summarize


@pytest.mark.parametrize("num_classes", [2, 3])
def test_agrees_with_sklearn(num_classes: int) -> None:
    rng = np.random.default_rng(num_classes)
    target = rng.integers(0, num_classes, size=(3, 6, 6, 6))
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, num_classes, size=target.shape))
    scores = summarize(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), num_classes))
    y, p = target.ravel(), pred.ravel()
    assert scores["dice_mean"] == pytest.approx(f1_score(y, p, average="macro"))
    assert scores["iou_mean"] == pytest.approx(jaccard_score(y, p, average="macro"))
    assert scores["dice_per_class"] == pytest.approx(list(f1_score(y, p, average=None)))
    fg_y, fg_p = (y != 0).astype(int), (p != 0).astype(int)
    assert scores["dice_fg"] == pytest.approx(f1_score(fg_y, fg_p))
    assert scores["iou_fg"] == pytest.approx(jaccard_score(fg_y, fg_p))


def test_meter_overall_per_class_and_per_volume() -> None:
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 2, size=(4, 5, 5, 5)))
    pred = torch.from_numpy(rng.integers(0, 2, size=(4, 5, 5, 5)))
    names = ["ball", "rod", "ball", "rod"]
    meter = SegmentationMeter(2)
    meter.update(pred[:2], target[:2], names[:2])
    meter.update(pred[2:], target[2:], names[2:])
    result = meter.result()
    y, p = target.numpy().ravel(), pred.numpy().ravel()
    assert result["overall"]["dice_fg"] == pytest.approx(f1_score(y, p))
    ball = [0, 2]
    yb, pb = target[ball].numpy().ravel(), pred[ball].numpy().ravel()
    assert result["per_macromolecule"]["ball"]["dice_fg"] == pytest.approx(f1_score(yb, pb))
    assert result["per_macromolecule"]["ball"]["volumes"] == 2
    per_volume = [f1_score(target[i].numpy().ravel(), pred[i].numpy().ravel()) for i in range(4)]
    assert result["per_volume_dice_mean"] == pytest.approx(float(np.mean(per_volume)))


def test_empty_class_in_both_scores_one() -> None:
    zeros = torch.zeros(4, 4, 4, dtype=torch.long)
    scores = summarize(confusion_matrix(zeros, zeros, 2))
    assert scores["dice_fg"] == 1.0 and scores["iou_fg"] == 1.0 and scores["dice_mean"] == 1.0

"""Segmentation metrics from confusion matrices: Dice and IoU, foreground and mean over classes.

Everything is computed from integer confusion matrices so that overall (micro over all voxels), per
macromolecule class and per-volume numbers come from one pass and agree exactly with scikit-learn's
``f1_score``/``jaccard_score`` on flattened voxels (binary foreground = ``label != 0``; mean = macro over
classes).
A class absent from both prediction and truth scores 1.0 (nothing to find, nothing found); scikit-learn
would report 0 with a warning, which would punish volumes without that class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(K, K)`` int64 counts, rows = truth, columns = prediction, over all voxels of any shape."""
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    index = target * num_classes + pred
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    num = numerator.double()
    den = denominator.double()
    return torch.where(den > 0, num / den.clamp_min(1), torch.ones_like(num))


def class_scores(confusion: Tensor) -> tuple[Tensor, Tensor]:
    """Per-class Dice and IoU ``(K,)`` from a confusion matrix."""
    tp = confusion.diag()
    fp = confusion.sum(dim=0) - tp
    fn = confusion.sum(dim=1) - tp
    dice = _ratio(2 * tp, 2 * tp + fp + fn)
    iou = _ratio(tp, tp + fp + fn)
    return dice, iou


def foreground_scores(confusion: Tensor) -> tuple[float, float]:
    """Dice and IoU of foreground (every class but 0) against background."""
    tp = confusion[1:, 1:].sum()
    fp = confusion[0, 1:].sum()
    fn = confusion[1:, 0].sum()
    dice = _ratio(2 * tp, 2 * tp + fp + fn)
    iou = _ratio(tp, tp + fp + fn)
    return float(dice), float(iou)


def summarize(confusion: Tensor) -> dict[str, Any]:
    """Dice/IoU foreground, mean over classes and per class from one confusion matrix."""
    dice, iou = class_scores(confusion)
    dice_fg, iou_fg = foreground_scores(confusion)
    return {
        "dice_fg": dice_fg,
        "iou_fg": iou_fg,
        "dice_mean": float(dice.mean()),
        "iou_mean": float(iou.mean()),
        "dice_per_class": [float(v) for v in dice],
        "iou_per_class": [float(v) for v in iou],
        "voxels": int(confusion.sum()),
    }


class SegmentationMeter:
    """Accumulates predictions of many volumes: overall, per macromolecule class and per-volume Dice."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.total = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.by_class: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        self.volume_dice: list[float] = []

    def update(self, pred: Tensor, target: Tensor, class_names: Sequence[str] | None = None) -> None:
        """Add a batch: ``pred`` and ``target`` are ``(N, D, H, W)`` label maps."""
        names = list(class_names) if class_names is not None else [""] * pred.shape[0]
        for p, t, name in zip(pred.cpu(), target.cpu(), names):
            cm = confusion_matrix(p, t, self.num_classes)
            self.total += cm
            if name:
                self.by_class[name] = self.by_class.get(name, torch.zeros_like(cm)) + cm
                self.counts[name] = self.counts.get(name, 0) + 1
            self.volume_dice.append(foreground_scores(cm)[0])

    def result(self) -> dict[str, Any]:
        per_class = {
            name: {**summarize(cm), "volumes": self.counts[name]}
            for name, cm in sorted(self.by_class.items())
        }
        mean_volume = sum(self.volume_dice) / len(self.volume_dice) if self.volume_dice else float("nan")
        return {
            "overall": summarize(self.total),
            "per_macromolecule": per_class,
            "per_volume_dice_mean": mean_volume,
            "volumes": len(self.volume_dice),
        }

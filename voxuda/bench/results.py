"""Aggregation of per-run evaluations into table rows: mean and std over seeds, gap closed, selection regret.

One :class:`EvalRecord` is the test-split score of one run (target, label, seed) under one test-time input
denoiser, for one checkpoint: the checkpoint the run's selection criterion chose (``selected``) or, when the
suite asks for selection regret, the one the label-leaking ``target_oracle`` criterion would have chosen
(``oracle_choice``). Rows group the ``selected`` records over seeds; regret is the mean over seeds of
``dice(oracle_choice) - dice(selected)`` (>= 0 up to noise: how much the label-free choice costs).

"Gap closed" = (Dice - Dice_source_only) / (Dice_oracle - Dice_source_only), with both references taken on
the same target *without* test-time denoising, so a denoised source-only row shows what denoising alone buys.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

METRICS = ("dice", "iou")


@attrs.frozen
class EvalRecord:
    """The score of one checkpoint of one run on the target's labelled test split."""

    suite: str
    target: str
    label: str
    method: str
    seed: int
    input_denoiser: str
    selection: str
    checkpoint: str  # "selected" or "oracle_choice"
    step: int | None
    dice: float
    iou: float
    per_class: Mapping[str, Mapping[str, float]] = attrs.field(factory=dict)
    flag: str = ""
    leaky_selection: bool = False
    init_from: str | None = None
    group: str = ""
    n_volumes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalRecord:
        known = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@attrs.frozen
class Row:
    """One line of a result table: a run label on a target under one test-time input denoiser."""

    target: str
    label: str
    method: str
    input_denoiser: str
    selection: str
    n_seeds: int
    dice_mean: float
    dice_std: float
    iou_mean: float
    iou_std: float
    per_class: Mapping[str, Mapping[str, tuple[float, float]]]
    gap_closed: float
    regret_mean: float
    regret_std: float
    flag: str
    leaky_selection: bool
    init_from: str | None
    group: str
    seeds: tuple[int, ...]

    @property
    def is_upper_bound(self) -> bool:
        return bool(self.flag)

    def flat(self, classes: Sequence[str]) -> dict[str, Any]:
        """A flat dict for CSV: fixed columns, then per-class mean/std columns in ``classes`` order."""
        out: dict[str, Any] = {
            "target": self.target,
            "label": self.label,
            "method": self.method,
            "input_denoiser": self.input_denoiser,
            "selection": self.selection,
            "selection_uses_target_labels": self.leaky_selection,
            "flag": self.flag,
            "init_from": self.init_from or "",
            "n_seeds": self.n_seeds,
            "seeds": " ".join(str(s) for s in self.seeds),
            "dice_mean": self.dice_mean,
            "dice_std": self.dice_std,
            "iou_mean": self.iou_mean,
            "iou_std": self.iou_std,
            "gap_closed": self.gap_closed,
            "selection_regret_dice": self.regret_mean,
            "selection_regret_dice_std": self.regret_std,
        }
        for cls in classes:
            for metric in METRICS:
                mean, std = self.per_class.get(cls, {}).get(metric, (math.nan, math.nan))
                out[f"{metric}_{cls}_mean"] = mean
                out[f"{metric}_{cls}_std"] = std
        return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value; NaN for none). NaNs are dropped first."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return math.nan, math.nan
    if len(vals) == 1:
        return vals[0], 0.0
    return statistics.fmean(vals), statistics.stdev(vals)


def class_names(records: Iterable[EvalRecord]) -> list[str]:
    """Every class seen in any record, sorted (classes absent from a target give NaN cells)."""
    return sorted({cls for r in records for cls in r.per_class})


def aggregate(records: Sequence[EvalRecord], *, source_label: str | None = None,
              oracle_label: str | None = None, reference_denoiser: str = "identity") -> list[Row]:
    """Group ``selected`` records into rows; add gap closed and selection regret.

    The source-only and oracle references are the first runs whose *method* is ``source_only`` / ``oracle``
    unless labels are given.
    """
    selected = [r for r in records if r.checkpoint == "selected"]
    oracle_choice = {(r.target, r.label, r.input_denoiser, r.seed): r for r in records
                     if r.checkpoint == "oracle_choice"}
    groups: dict[tuple[str, str, str], list[EvalRecord]] = {}
    for r in selected:
        groups.setdefault((r.target, r.label, r.input_denoiser), []).append(r)
    src = source_label or _first_label(selected, "source_only")
    orc = oracle_label or _first_label(selected, "oracle")
    refs: dict[tuple[str, str], float] = {}
    for (target, label, den), recs in groups.items():
        if den == reference_denoiser and label in (src, orc):
            refs[(target, label)] = mean_std([r.dice for r in recs])[0]
    rows = []
    for (target, label, den), recs in groups.items():
        recs = sorted(recs, key=lambda r: r.seed)
        first = recs[0]
        dice = mean_std([r.dice for r in recs])
        iou = mean_std([r.iou for r in recs])
        per_class: dict[str, dict[str, tuple[float, float]]] = {}
        for cls in class_names(recs):
            per_class[cls] = {m: mean_std([r.per_class.get(cls, {}).get(m, math.nan) for r in recs])
                              for m in METRICS}
        regrets = [oracle_choice[(target, label, den, r.seed)].dice - r.dice for r in recs
                   if (target, label, den, r.seed) in oracle_choice]
        regret = mean_std(regrets)
        lo, hi = refs.get((target, src or "")), refs.get((target, orc or ""))
        gap = math.nan
        if lo is not None and hi is not None and not math.isnan(lo) and not math.isnan(hi) and hi - lo > 1e-9:
            gap = (dice[0] - lo) / (hi - lo)
        rows.append(
            Row(
                target=target, label=label, method=first.method, input_denoiser=den,
                selection=first.selection, n_seeds=len(recs), dice_mean=dice[0], dice_std=dice[1],
                iou_mean=iou[0], iou_std=iou[1], per_class=per_class, gap_closed=gap,
                regret_mean=regret[0], regret_std=regret[1], flag=first.flag,
                leaky_selection=first.leaky_selection, init_from=first.init_from, group=first.group,
                seeds=tuple(r.seed for r in recs),
            )
        )
    return rows


def _first_label(records: Sequence[EvalRecord], method: str) -> str | None:
    for r in records:
        if r.method == method:
            return r.label
    return None


def order_rows(rows: Sequence[Row], label_order: Sequence[str], denoiser_order: Sequence[str]) -> list[Row]:
    """Suite order: target, then the suite's run order, then the test-time denoiser order; oracle last."""
    def key(r: Row) -> tuple[Any, ...]:
        li = label_order.index(r.label) if r.label in label_order else len(label_order)
        di = denoiser_order.index(r.input_denoiser) if r.input_denoiser in denoiser_order else 99
        return (r.target, r.is_upper_bound, li, di)

    return sorted(rows, key=key)

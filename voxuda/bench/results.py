"""Aggregation of per-run evaluations into table rows: mean and std over seeds, gap closed, selection regret,
paired differences against the control and the parent, and per-target summaries.

One :class:`EvalRecord` is the test-split score of one network of one run (target, label, seed) under one
test-time input denoiser, for one checkpoint: the checkpoint the run's selection criterion chose
(``selected``), the one the label-leaking ``target_oracle`` criterion would have chosen (``oracle_choice``,
reported network only), or one of the last kept evaluation points of a warm-start parent (``evalpoint``,
for the checkpoint noise). Rows group the ``selected`` records over seeds, one row per predicting network
(a mean-teacher run gives a teacher row and a student row; the method's row is its reported network);
regret is the mean over seeds of ``dice(oracle_choice) - dice(selected)`` (>= 0 up to noise: how much the
label-free choice costs).

"Gap closed" = (Dice - Dice_source_only) / (Dice_oracle - Dice_source_only), with both references taken on
the same target *without* test-time denoising, so a denoised source-only row shows what denoising alone
buys; the source-only reference is the parent of the warm starts (the first ``source_only`` run that is not
itself warm-started). Paired differences (:mod:`voxuda.bench.stats`) match seeds and test-time input:
against the **control** (the trained ``source_only`` run continuing from the same parent,
``source_only_cont`` in the built-in suites), against the **parent**, and against every evaluate-only
**baseline** of the same parent (e.g. source-only + input alignment).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from voxuda.bench.diagnostics import mean_diagnostics
from voxuda.bench.stats import PairedInterval, paired_interval

METRICS = ("dice", "iou")


@attrs.frozen
class EvalRecord:
    """The score of one checkpoint of one run (one of its networks) on the target's labelled test split."""

    suite: str
    target: str
    label: str
    method: str
    seed: int
    input_denoiser: str
    selection: str
    checkpoint: str  # "selected", "oracle_choice" or "evalpoint"
    step: int | None
    dice: float
    iou: float
    per_class: Mapping[str, Mapping[str, float]] = attrs.field(factory=dict)
    flag: str = ""
    leaky_selection: bool = False
    init_from: str | None = None
    group: str = ""
    n_volumes: int = 0
    network: str = ""  # the key in method.networks(); "" in eval.json of older voxuda (= the reported one)
    reported: bool = True  # the network behind method.predictor(), i.e. the method's own table row
    mode: str = "train"  # "train", "evaluate_only" or "shared" (voxuda.bench.suite)
    weights_from: str | None = None  # run whose checkpoint was evaluated, for evaluate-only/shared runs
    decision: Mapping[str, Any] | None = None  # the prior-calibrated readout's record; None = argmax
    schedule: str = ""  # the run's training schedule (:func:`schedule_key`), to pair a run with its control

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalRecord:
        known = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def run_id(self) -> str:
        return f"{self.target}/{self.label}/seed{self.seed}"


@attrs.frozen
class Row:
    """One line of a result table: a run label on a target under one test-time input, for one network."""

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
    network: str = ""
    reported: bool = True
    mode: str = "train"
    weights_from: str | None = None
    control: str | None = None
    vs_control: PairedInterval | None = None
    vs_parent: PairedInterval | None = None
    vs_baselines: Mapping[str, PairedInterval] = attrs.field(factory=dict)
    diagnostics: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def is_upper_bound(self) -> bool:
        return bool(self.flag)

    @property
    def display_label(self) -> str:
        """The run label; a network other than the method's reported one is marked ``label [student]``."""
        return self.label if self.reported else f"{self.label} [{self.network or '?'}]"

    @property
    def network_name(self) -> str:
        """The network's name (``predictor`` for a method that does not name its networks)."""
        return self.network or "predictor"

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
            "network": self.network_name,
            "reported_network": self.reported,
            "mode": self.mode,
            "weights_from": self.weights_from or "",
            "control": self.control or "",
        }
        for name, interval in (("control", self.vs_control), ("parent", self.vs_parent)):
            out.update(interval_columns(f"delta_vs_{name}", interval))
        diag = self.diagnostics
        for key in ("domain_accuracy_tail", "pseudo_fg_fraction", "teacher_fg_fraction"):
            out[key] = diag.get(key, math.nan)
        for net in ("student", "teacher"):
            out[f"drift_{net}"] = (diag.get("drift") or {}).get(net, math.nan)
        for cls in classes:
            for metric in METRICS:
                mean, std = self.per_class.get(cls, {}).get(metric, (math.nan, math.nan))
                out[f"{metric}_{cls}_mean"] = mean
                out[f"{metric}_{cls}_std"] = std
        return out


def interval_columns(prefix: str, interval: PairedInterval | None) -> dict[str, Any]:
    """Flat CSV columns of a paired interval (NaN/empty when there is nothing to compare)."""
    if interval is None:
        return {f"{prefix}_mean": math.nan, f"{prefix}_ci_low": math.nan, f"{prefix}_ci_high": math.nan,
                f"{prefix}_n": 0, f"{prefix}_significant": ""}
    return {f"{prefix}_mean": interval.mean, f"{prefix}_ci_low": interval.low,
            f"{prefix}_ci_high": interval.high, f"{prefix}_n": interval.n,
            f"{prefix}_significant": interval.significant if interval.tested else ""}


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


def aggregate(records: Sequence[EvalRecord], *, diagnostics: Mapping[str, Mapping[str, Any]] | None = None,
              source_label: str | None = None, oracle_label: str | None = None,
              reference_denoiser: str = "identity") -> list[Row]:
    """Group ``selected`` records into rows (one per target, label, test-time input and network); add gap
    closed, selection regret, paired differences and the runs' diagnostics (``diagnostics`` is keyed by
    run id, ``<target>/<label>/seed<k>``).

    The source-only and oracle references are the first runs whose *method* is ``source_only`` (preferring
    one that is not warm-started) / ``oracle`` unless labels are given.
    """
    selected = [r for r in records if r.checkpoint == "selected"]
    oracle_choice = {(r.target, r.label, r.input_denoiser, r.seed): r for r in records
                     if r.checkpoint == "oracle_choice" and r.reported}
    groups: dict[tuple[str, str, str, str], list[EvalRecord]] = {}
    for r in selected:
        groups.setdefault((r.target, r.label, r.input_denoiser, r.network), []).append(r)
    series = {key: {r.seed: r.dice for r in recs} for key, recs in groups.items()}
    reported = {(r.target, r.label): r.network for r in selected if r.reported}
    src = source_label or first_label(selected, "source_only")
    orc = oracle_label or first_label(selected, "oracle")
    refs: dict[tuple[str, str], float] = {}
    for (target, label, den, _net), recs in groups.items():
        if den == reference_denoiser and label in (src, orc) and recs[0].reported:
            refs[(target, label)] = mean_std([r.dice for r in recs])[0]
    roles = _roles(selected)

    def reported_series(target: str, label: str | None, den: str) -> dict[int, float]:
        if label is None or (target, label) not in reported:
            return {}
        return series.get((target, label, den, reported[(target, label)]), {})

    rows = []
    for (target, label, den, net), recs in groups.items():
        recs = sorted(recs, key=lambda r: r.seed)
        first = recs[0]
        dice = mean_std([r.dice for r in recs])
        iou = mean_std([r.iou for r in recs])
        per_class: dict[str, dict[str, tuple[float, float]]] = {}
        for cls in class_names(recs):
            per_class[cls] = {m: mean_std([r.per_class.get(cls, {}).get(m, math.nan) for r in recs])
                              for m in METRICS}
        regrets = [oracle_choice[(target, label, den, r.seed)].dice - r.dice for r in recs
                   if r.reported and (target, label, den, r.seed) in oracle_choice]
        regret = mean_std(regrets)
        lo, hi = refs.get((target, src or "")), refs.get((target, orc or ""))
        gap = math.nan
        if lo is not None and hi is not None and not math.isnan(lo) and not math.isnan(hi) and hi - lo > 1e-9:
            gap = (dice[0] - lo) / (hi - lo)
        own = series[(target, label, den, net)]
        control: str | None = None
        vs_control = vs_parent = None
        baselines: dict[str, PairedInterval] = {}
        if first.init_from is not None:
            control = roles.control_of(first)
            if control == label:
                control = None  # the control itself: its drift shows in "vs parent"
            if control is not None:
                vs_control = paired_interval(own, reported_series(target, control, den))
            vs_parent = paired_interval(own, reported_series(target, first.init_from, den))
            for base in roles.baselines.get((target, roles.root_of(first)), []):
                interval = paired_interval(own, reported_series(target, base, den)) if base != label else None
                if interval is not None:
                    baselines[base] = interval
        diag = mean_diagnostics([(diagnostics or {}).get(r.run_id, {}) for r in recs])
        rows.append(
            Row(
                target=target, label=label, method=first.method, input_denoiser=den,
                selection=first.selection, n_seeds=len(recs), dice_mean=dice[0], dice_std=dice[1],
                iou_mean=iou[0], iou_std=iou[1], per_class=per_class, gap_closed=gap,
                regret_mean=regret[0], regret_std=regret[1], flag=first.flag,
                leaky_selection=first.leaky_selection, init_from=first.init_from, group=first.group,
                seeds=tuple(r.seed for r in recs), network=net, reported=first.reported, mode=first.mode,
                weights_from=first.weights_from, control=control, vs_control=vs_control,
                vs_parent=vs_parent, vs_baselines=baselines, diagnostics=diag,
            )
        )
    return rows


#: Trainer keys that do not change what a run learns; left out of :func:`schedule_key`.
OPERATIONAL_TRAINER_KEYS = frozenset({"progress", "num_threads", "device", "deterministic", "log_every",
                                      "checkpoint_every"})


def schedule_key(trainer: Mapping[str, Any]) -> str:
    """A run's training schedule as a canonical string (steps, learning rate, warm-up, ...): a method run
    is compared with the control trained on the same one."""
    return json.dumps({k: v for k, v in trainer.items() if k not in OPERATIONAL_TRAINER_KEYS}, sort_keys=True)


@attrs.frozen
class _Roles:
    controls: dict[tuple[str, str, str], str]  # (target, parent, schedule) -> control label
    first_controls: dict[tuple[str, str], str]  # (target, parent) -> the first control, whatever its schedule
    baselines: dict[tuple[str, str], list[str]]  # (target, parent) -> evaluate-only labels
    trained_from: dict[tuple[str, str], str]  # (target, trained warm-started label) -> its parent

    def root_of(self, record: EvalRecord) -> str:
        """The parent ``record`` descends from: its ``init_from``, or, for another readout of a trained
        warm-started run (evaluate-only with that run's weights), that run's parent, so the readout is
        compared with the same control and baselines as the run itself."""
        assert record.init_from is not None
        if record.mode == "evaluate_only":
            return self.trained_from.get((record.target, record.init_from), record.init_from)
        return record.init_from

    def control_of(self, record: EvalRecord) -> str | None:
        """The control trained on ``record``'s schedule; for records without one (older voxuda) or with
        no control on it, the parent's first control."""
        root = self.root_of(record)
        same = self.controls.get((record.target, root, record.schedule))
        return same or self.first_controls.get((record.target, root))


def _roles(selected: Sequence[EvalRecord]) -> _Roles:
    """Per target and parent: the controls (the *trained* source-only runs warm-started from that parent,
    one per schedule) and the evaluate-only baselines (no training: the parent's weights under another
    config)."""
    controls: dict[tuple[str, str, str], str] = {}
    first: dict[tuple[str, str], str] = {}
    baselines: dict[tuple[str, str], list[str]] = {}
    trained_from: dict[tuple[str, str], str] = {}
    for r in selected:
        if r.init_from is None or not r.reported:
            continue
        key = (r.target, r.init_from)
        if r.mode == "evaluate_only":
            if r.label not in baselines.setdefault(key, []):
                baselines[key].append(r.label)
            continue
        trained_from[(r.target, r.label)] = r.init_from
        if r.method == "source_only":
            controls.setdefault((*key, r.schedule), r.label)
            first.setdefault(key, r.label)
    return _Roles(controls, first, baselines, trained_from)


def first_label(records: Sequence[EvalRecord], method: str) -> str | None:
    """The first run of ``method`` that is not warm-started (else the first run of it at all)."""
    for r in records:
        if r.method == method and r.init_from is None:
            return r.label
    return next((r.label for r in records if r.method == method), None)


def order_rows(rows: Sequence[Row], label_order: Sequence[str], denoiser_order: Sequence[str]) -> list[Row]:
    """Suite order: target, then the suite's run order (the reported network first), then the test-time
    denoiser order; oracle last."""
    def key(r: Row) -> tuple[Any, ...]:
        li = label_order.index(r.label) if r.label in label_order else len(label_order)
        di = denoiser_order.index(r.input_denoiser) if r.input_denoiser in denoiser_order else 99
        return (r.target, r.is_upper_bound, li, not r.reported, r.network, di)

    return sorted(rows, key=key)


# -- per-target summaries ----------------------------------------------------------------------------------
@attrs.frozen
class TargetSummary:
    """What a table's header states besides the rows: the parent, its source-validation Dice, the
    checkpoint noise and the selection rule of every run."""

    target: str
    parent: str | None
    parent_source_val: tuple[float, float] | None  # mean, std over seeds of the best source_val Dice
    parent_source_val_seeds: int
    noise_std: float  # mean over seeds of the std of test Dice over the parent's last kept eval points
    noise_range: float  # mean over seeds of max - min over the same points
    noise_steps: tuple[int, ...]
    noise_seeds: int
    selection_rules: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def summarise_targets(records: Sequence[EvalRecord], diagnostics: Mapping[str, Mapping[str, Any]],
                      reference_denoiser: str = "identity") -> dict[str, TargetSummary]:
    """One :class:`TargetSummary` per target of ``records``."""
    selected = [r for r in records if r.checkpoint == "selected" and r.reported]
    out = {}
    for target in dict.fromkeys(r.target for r in selected):
        recs = [r for r in selected if r.target == target]
        parents = [r.init_from for r in recs if r.init_from is not None]
        src = first_label(recs, "source_only")
        parent = src if src in parents else (parents[0] if parents else src)
        seeds = sorted({r.seed for r in recs if r.label == parent})
        scores = []
        for seed in seeds:
            val = (diagnostics.get(f"{target}/{parent}/seed{seed}") or {}).get("validation") or {}
            if val.get("criterion") == "source_val":
                scores.append(float(val["best_score"]))
        points = [r for r in records if r.checkpoint == "evalpoint" and r.target == target
                  and r.label == parent and r.input_denoiser == reference_denoiser and r.reported]
        stds, ranges = [], []
        for seed in sorted({r.seed for r in points}):
            dice = [r.dice for r in sorted(points, key=lambda r: r.step or 0) if r.seed == seed]
            if len(dice) >= 2:
                stds.append(statistics.stdev(dice))
                ranges.append(max(dice) - min(dice))
        out[target] = TargetSummary(
            target=target, parent=parent,
            parent_source_val=mean_std(scores) if scores else None, parent_source_val_seeds=len(scores),
            noise_std=statistics.fmean(stds) if stds else math.nan,
            noise_range=statistics.fmean(ranges) if ranges else math.nan,
            noise_steps=tuple(sorted({int(r.step) for r in points if r.step is not None})),
            noise_seeds=len(stds),
            selection_rules=selection_rules(recs, diagnostics),
        )
    return out


def selection_rules(records: Sequence[EvalRecord],
                    diagnostics: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """How each run's checkpoint was chosen, in words, runs with the same rule grouped:
    ``source_only: checkpoint = best source_val of steps 50, 100, 150, 200``."""
    rules: dict[str, list[str]] = {}
    for label in dict.fromkeys(r.label for r in records):
        recs = [r for r in records if r.label == label]
        first = recs[0]
        diag = diagnostics.get(first.run_id) or {}
        val = diag.get("validation") or {}
        if first.mode == "evaluate_only":
            text = (f"the selected checkpoint of {first.init_from}, evaluated under this run's config "
                    "(no training)")
        elif first.selection == "last":
            text = f"the last step ({first.step})" if first.step is not None else "the last step"
        elif val.get("steps"):
            steps = ", ".join(str(s) for s in val["steps"])
            text = f"best {val.get('criterion') or first.selection} of steps {steps}"
        else:
            text = f"best {first.selection} (evaluation steps not logged)"
        if first.mode == "shared" and first.weights_from:
            text += f"; trained once on {first.weights_from.split('/')[0]} and shared"
        rules.setdefault(text, []).append(label)
    return tuple(f"{', '.join(labels)}: checkpoint = {text}" for text, labels in rules.items())


# -- one suite's results, as written to and read back from results.json ------------------------------------
@attrs.define
class SuiteResults:
    """Everything a report needs about one suite's output folder: provenance, per-run records and
    diagnostics and the suite's order; rows and per-target summaries are computed from them, so a report
    can be rebuilt from ``results.json`` alone (``voxuda benchmark --from``)."""

    meta: dict[str, Any]
    records: list[EvalRecord]
    diagnostics: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    label_order: list[str] = attrs.field(factory=list)
    denoiser_order: list[str] = attrs.field(factory=list)
    figures: list[str] = attrs.field(factory=list)
    rows: list[Row] = attrs.field(init=False)
    summaries: dict[str, TargetSummary] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        labels = self.label_order or list(dict.fromkeys(r.label for r in self.records))
        dens = self.denoiser_order or list(dict.fromkeys(r.input_denoiser for r in self.records))
        self.rows = order_rows(aggregate(self.records, diagnostics=self.diagnostics), labels, dens)
        self.summaries = summarise_targets(self.records, self.diagnostics)

    @property
    def name(self) -> str:
        return str(self.meta.get("suite", ""))

    @property
    def track(self) -> str:
        return str(self.meta.get("track") or "")

    @property
    def classes(self) -> list[str]:
        return class_names(self.records)

    def to_json(self) -> dict[str, Any]:
        """The parts of ``results.json`` a report is rebuilt from (the caller adds rows and findings)."""
        return {
            "meta": dict(self.meta),
            "label_order": list(self.label_order),
            "denoiser_order": list(self.denoiser_order),
            "figures": list(self.figures),
            "records": [r.to_dict() for r in self.records],
            "diagnostics": dict(self.diagnostics),
            "summaries": {t: s.to_dict() for t, s in self.summaries.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SuiteResults:
        """Read ``results.json`` (also one written by an older voxuda: no diagnostics, no order)."""
        return cls(
            meta=dict(data.get("meta", {})),
            records=[EvalRecord.from_dict(r) for r in data.get("records", [])],
            diagnostics={str(k): dict(v) for k, v in (data.get("diagnostics") or {}).items()},
            label_order=list(data.get("label_order") or []),
            denoiser_order=list(data.get("denoiser_order") or []),
            figures=list(data.get("figures") or []),
        )

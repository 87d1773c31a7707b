"""scripts/summary_table.py: the compact summaries other pages quote, printed from suite results."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import attrs
import pytest

from voxuda.bench.results import Row
from voxuda.bench.stats import PairedInterval

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from summary_table import markdown_summary, summary_rows  # noqa: E402


def row(target: str, label: str, *, network: str = "teacher", reported: bool = True, dice: float = 0.5,
        denoiser: str = "identity", control: PairedInterval | None = None,
        baselines: dict[str, PairedInterval] | None = None, init_from: str | None = None,
        mode: str = "train", selection: str = "x") -> Row:
    return Row(
        target=target, label=label, method="vox_uda", input_denoiser=denoiser, selection=selection, n_seeds=3,
        dice_mean=dice, dice_std=0.01, iou_mean=0.0, iou_std=0.0, per_class={}, gap_closed=0.9,
        regret_mean=0.0, regret_std=0.0, flag="", leaky_selection=False, init_from=init_from, group="",
        seeds=(0, 1, 2), network=network, reported=reported, vs_control=control,
        vs_baselines=baselines or {}, mode=mode,
    )


def test_rows_are_chosen_by_label_and_input_and_ordered_by_target_label_then_network() -> None:
    rows = [row("b", "m", network="student", reported=False), row("b", "m"), row("a", "c"), row("a", "m"),
            row("a", "m", denoiser="gaussian(sigma=1.0)"), row("a", "other")]
    chosen = summary_rows(rows, ["m", "c"], "identity", ["a", "b"])
    assert [(r.target, r.label, r.network) for r in chosen] == [
        ("a", "m", "teacher"), ("a", "c", "teacher"), ("b", "m", "teacher"), ("b", "m", "student")]


def test_the_gap_closed_is_not_rounded_up_to_a_bar() -> None:
    """A row at 89.5 % of the gap must not read as 90 %: the issue's bar is 90 %."""
    just_below = attrs.evolve(row("a", "m"), gap_closed=0.8951)
    assert "| 89.5 % |" in markdown_summary([just_below], "align").splitlines()[-1]


def test_the_table_carries_dice_gap_and_both_intervals() -> None:
    win = PairedInterval(n=3, mean=0.1, sd=0.01, low=0.05, high=0.15)
    tie = PairedInterval(n=3, mean=0.01, sd=0.05, low=-0.1, high=0.12)
    text = markdown_summary([row("a", "m", dice=0.713, control=win, baselines={"align": tie})], "align")
    line = text.splitlines()[-1]
    assert "`m` (teacher, reported)" in line and "0.713 ± 0.010 (n=3)" in line and "| 90.0 % |" in line
    assert win.text() in line and tie.text() in line and "n.s." in line
    assert text.splitlines()[0].endswith("| vs align |")


def test_versus_pairs_the_same_network_by_seed() -> None:
    """An ablated row against the full method: per-seed differences of the same network's test Dice."""
    from summary_table import versus  # noqa: E402

    from voxuda.bench.results import EvalRecord

    def record(label: str, network: str, seed: int, dice: float, reported: bool) -> EvalRecord:
        return EvalRecord(suite="s", target="a", label=label, method="vox_uda", seed=seed,
                          input_denoiser="identity", selection="x", checkpoint="selected", step=1, dice=dice,
                          iou=0.0, network=network, reported=reported)

    records = [record("full", "student", s, d, False) for s, d in ((0, 0.60), (1, 0.62), (2, 0.61))]
    records += [record("full", "teacher", s, 0.9, True) for s in range(3)]
    records += [record("cut", "student", s, d, False) for s, d in ((0, 0.65), (1, 0.66), (2, 0.67))]
    interval = versus(records, row("a", "cut", network="student", reported=False), "full")
    assert interval is not None and interval.n == 3
    assert abs(interval.mean - 0.05) < 1e-9 and interval.low > 0  # the student's, not the teacher's 0.9
    assert versus(records, row("a", "full", network="student", reported=False), "full") is None


def test_a_run_shared_by_two_suites_is_listed_once_from_the_first_folder() -> None:
    rows = [row("a", "control", dice=0.30), row("a", "m"), row("a", "control", dice=0.99)]
    chosen = summary_rows(rows, ["control", "m"], "identity", ["a"])
    assert [(r.label, r.dice_mean) for r in chosen] == [("control", 0.30), ("m", 0.5)]


def test_the_gap_column_measures_between_the_named_rows_of_the_same_input() -> None:
    rows = [row("a", "low", dice=0.2), row("a", "high", dice=0.6), row("a", "m", dice=0.5),
            row("a", "high", dice=0.9, denoiser="gaussian(sigma=1.0)"), row("b", "m", dice=0.5)]
    text = markdown_summary([rows[2], rows[4]], "align", gap=("low", "high"), all_rows=rows)
    lines = text.splitlines()
    assert lines[0].endswith("| gap closed (low to high) |")
    assert lines[2].endswith("| 75.0 % |")  # (0.5 - 0.2) / (0.6 - 0.2); the smoothed high row is not used
    assert lines[3].endswith("| - |")  # target b has no ends


def test_the_seed_gap_column_is_each_seeds_fraction_with_its_interval() -> None:
    """Per seed against that seed's own ends (reported networks): 50 %, 60 %, 70 % -> 60 % [35 %, 85 %]."""
    from summary_table import seed_gap  # noqa: E402

    from voxuda.bench.results import EvalRecord

    def record(label: str, seed: int, dice: float, network: str = "student",
               reported: bool = True) -> EvalRecord:
        return EvalRecord(suite="s", target="a", label=label, method="m", seed=seed,
                          input_denoiser="identity", selection="x", checkpoint="selected", step=1, dice=dice,
                          iou=0.0, network=network, reported=reported)

    records = [record("low", s, d) for s, d in ((0, 0.2), (1, 0.3), (2, 0.1))]
    records += [record("high", s, d) for s, d in ((0, 0.6), (1, 0.5), (2, 0.5))]
    records += [record("m", s, d, "teacher") for s, d in ((0, 0.4), (1, 0.42), (2, 0.38))]
    records += [record("m", s, 0.0, "student", False) for s in range(3)]
    interval = seed_gap(records, row("a", "m"), "low", "high")
    assert interval is not None and interval.n == 3
    # (0.5 + 0.6 + 0.7) / 3, not the ratio of the means (0.4 - 0.2) / (0.533 - 0.2)
    assert abs(interval.mean - 0.6) < 1e-9
    assert abs(interval.high - interval.mean - 4.302653 * 0.1 / 3 ** 0.5) < 1e-5
    text = markdown_summary([row("a", "m")], "align", records=records, seed_gap_ends=("low", "high"))
    assert text.splitlines()[0].endswith("| gap closed per seed (low to high), 95 % t |")
    assert text.splitlines()[2].endswith("| 60 % [35 %, 85 %] |")


def test_versus_parent_pairs_evaluate_only_rows_with_the_row_they_read_and_pools_them() -> None:
    from voxuda.bench.results import EvalRecord

    def record(target: str, label: str, seed: int, dice: float, selection: str = "x") -> EvalRecord:
        return EvalRecord(suite="s", target=target, label=label, method="m", seed=seed,
                          input_denoiser="identity", selection=selection, checkpoint="selected", step=1,
                          dice=dice, iou=0.0, network="teacher", reported=True)

    records = [record("a", "m", s, 0.5) for s in range(3)] + [record("b", "m", s, 0.4) for s in range(3)]
    records += [record("a", "m_proxy", s, 0.5 + d, "y") for s, d in enumerate((0.01, 0.02, 0.03))]
    records += [record("b", "m_proxy", s, 0.4 + d, "y") for s, d in enumerate((0.00, 0.01, 0.02))]
    records += [record("a", "m_readout", s, 0.9) for s in range(3)]  # the parent's own choice, read otherwise
    rows = [row(t, "m") for t in "ab"]
    rows += [row(t, "m_proxy", init_from="m", mode="evaluate_only", selection="y") for t in "ab"]
    rows += [row("a", "m_readout", init_from="m", mode="evaluate_only")]
    lines = markdown_summary(rows, "align", records=records, versus_parent=True).splitlines()
    assert lines[0].split("|")[7].strip() == "vs the runs' own selection"
    assert lines[2].split("|")[7].strip() == "-"  # a trained row re-selects nothing
    assert lines[4].split("|")[7].strip().startswith("+0.020 [")
    assert lines[6].split("|")[7].strip() == "-"  # same selection as its parent: not pooled
    # mean 0.015, sd 0.0105 over 6, t(0.975, 5) = 2.571: half-width 0.011
    assert lines[-1].endswith("+0.015 [+0.004, +0.026] (n=6).")


def test_the_regret_column_shows_each_rows_mean_regret() -> None:
    rows = [attrs.evolve(row("a", "m"), regret_mean=0.0123),
            attrs.evolve(row("a", "n"), regret_mean=math.nan)]
    lines = markdown_summary(rows, "align", regret=True).splitlines()
    assert lines[0].split("|")[7].strip() == "selection regret"
    assert [line.split("|")[7].strip() for line in lines[2:]] == ["+0.012", "-"]


def test_the_loss_tail_column_is_the_mean_and_range_of_the_rows_runs() -> None:
    diagnostics = {f"a/m/seed{s}": {"loss_tail": {"seg_noisy": v, "seg": 0.1}}
                   for s, v in ((0, 0.30), (1, 0.36), (2, 0.33))}
    diagnostics["b/m/seed0"] = {"loss_tail": {"seg_noisy": 9.0}}  # another target's run is not this row's
    text = markdown_summary([row("a", "m"), row("a", "align")], "align",
                            loss_keys=["seg_noisy"], diagnostics=diagnostics)
    header, _, method, baseline = text.splitlines()
    assert header.endswith("| `seg_noisy`, last 20 % of steps, mean [min, max] over seeds |")
    assert method.endswith("| 0.330 [0.300, 0.360] |")
    assert baseline.endswith("| - |")  # an evaluate-only row trained nothing


def test_a_loss_the_diagnostics_do_not_record_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A typo would otherwise print a column of '-' that reads as 'never logged'."""
    from summary_table import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--from", "x", "--label", "m", "--loss-tail", "seg_noise"])
    assert exit_info.value.code == 2 and "invalid choice: 'seg_noise'" in capsys.readouterr().err


def test_a_folder_without_results_is_refused_in_one_line(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A benchmark still running has no results.json yet: say so and which folder, without a traceback."""
    from summary_table import main

    assert main(["--from", str(tmp_path), "--label", "m"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err and "no results.json" in err


def test_the_seed_gap_plot_needs_the_seed_gap_and_is_written(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib.image
    from summary_table import main

    from voxuda.bench.plots import seed_gap_chart

    with pytest.raises(SystemExit) as exit_info:
        main(["--from", str(tmp_path), "--label", "m", "--plot", str(tmp_path / "gap.png")])
    assert exit_info.value.code == 2 and "--seed-gap" in capsys.readouterr().err
    path = seed_gap_chart({"a": {"m (teacher)": [0.8, 0.95, 1.0], "c (student)": [0.1]}, "b": {}},
                          tmp_path / "gap.png", bar=0.9)
    assert path.is_file() and matplotlib.image.imread(path).shape[1] > 400


def test_the_readout_column_is_the_fraction_each_rows_decision_aimed_at() -> None:
    from voxuda.bench.results import EvalRecord

    def record(label: str, seed: int, decision: dict[str, float] | None, target: str = "a") -> EvalRecord:
        return EvalRecord(suite="s", target=target, label=label, method="source_only", seed=seed,
                          input_denoiser="identity", selection="x", checkpoint="selected", step=1, dice=0.3,
                          iou=0.0, network="teacher", reported=True, decision=decision)

    records = [record("em", s, {"target_fraction": f, "argmax_fraction": 0.02})
               for s, f in ((0, 0.028), (1, 0.031), (2, 0.034))]
    records += [record("em", 0, {"target_fraction": 0.5, "argmax_fraction": 0.5}, target="b")]  # not row a's
    records += [record("plain", s, None) for s in range(3)]
    text = markdown_summary([row("a", "em"), row("a", "plain")], "align", records=records, with_readout=True)
    header, _, em, plain = text.splitlines()
    assert header.endswith("| readout: fraction aimed at on target train, mean [min, max] over seeds |")
    assert em.endswith("| 3.10 % [2.80 %, 3.40 %] (argmax 2.00 %) |")
    assert plain.endswith("| - |")  # argmax rows record no decision

"""scripts/summary_table.py: the compact summaries other pages quote, printed from suite results."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
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


def _write_suite(folder: Path, seeds: Sequence[int], *, suite: str = "s", numerics: str = "cpu A") -> None:
    """A results.json of a method, its parent and an oracle over ``seeds``, with Dice set per seed."""
    from voxuda.bench.results import EvalRecord, SuiteResults

    def rec(label: str, method: str, seed: int, dice: float) -> EvalRecord:
        return EvalRecord(suite=suite, target="t", label=label, method=method, seed=seed,
                          input_denoiser="identity", selection="x", checkpoint="selected", step=1, dice=dice,
                          iou=0.0, network="student", init_from="src" if label == "m" else None)

    records = [r for s in seeds for r in (rec("src", "source_only", s, 0.2 + 0.01 * s),
                                         rec("m", "vox_uda", s, 0.3 + 0.02 * s),
                                         rec("orc", "oracle", s, 0.5))]
    results = SuiteResults(meta={"suite": suite, "numerics": numerics}, records=records)
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results.to_json()))


def test_seed_blocks_pooled_read_as_the_one_folder_holding_every_seed(tmp_path: Path) -> None:
    """Seeds trained in two folders and pooled give the same rows (means, paired intervals) as one folder
    with all of them, and the provenance names both machines' numerics."""
    from voxuda.bench.report import load_results, pool_seeds

    _write_suite(tmp_path / "all", [0, 1, 2, 3])
    _write_suite(tmp_path / "a", [0, 1])
    _write_suite(tmp_path / "b", [2, 3], numerics="cpu B")
    whole = {(r.label, r.network): r for r in load_results(tmp_path / "all").rows}
    pooled_results = pool_seeds([tmp_path / "a", tmp_path / "b"])
    pooled = {(r.label, r.network): r for r in pooled_results.rows}
    assert pooled.keys() == whole.keys() and pooled[("m", "student")].seeds == (0, 1, 2, 3)
    for key, r in whole.items():
        assert pooled[key].dice_mean == pytest.approx(r.dice_mean)
        assert pooled[key].vs_baselines == r.vs_baselines and pooled[key].gap_closed == r.gap_closed
    assert pooled_results.meta["numerics"] == "cpu A; cpu B"


def test_pooling_refuses_a_seed_in_two_folders_and_two_suites(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from summary_table import main

    _write_suite(tmp_path / "a", [0, 1])
    _write_suite(tmp_path / "b", [1, 2])
    _write_suite(tmp_path / "c", [5], suite="other")
    args = ["--label", "m", "--pool-seeds"]
    assert main(["--from", str(tmp_path / "a"), "--from", str(tmp_path / "b"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed 1" in err and str(tmp_path / "a") in err
    assert main(["--from", str(tmp_path / "a"), "--from", str(tmp_path / "c"), *args]) == 2
    assert "'other'" in capsys.readouterr().err
    assert main(["--from", str(tmp_path / "a"), *args]) == 0  # one folder pools to itself


def test_a_seed_without_a_gap_is_counted_in_the_seed_gap_column_and_can_be_left_out_of_every_row(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A failed oracle (Dice 0 at seed 3, below its parent) has no gap to close: the per-seed column reads
    the other seeds and says so; ``--defined-gap-only`` drops that seed from every column and names it."""
    from summary_table import main

    from voxuda.bench.results import EvalRecord, SuiteResults

    def rec(label: str, method: str, seed: int, dice: float) -> EvalRecord:
        return EvalRecord(suite="s", target="t", label=label, method=method, seed=seed,
                          input_denoiser="identity", selection="x", checkpoint="selected", step=1, dice=dice,
                          iou=0.0, network="student", init_from="src" if label == "m" else None)

    records = [r for s in range(4) for r in (rec("src", "source_only", s, 0.2 + 0.01 * s),
                                            rec("m", "vox_uda", s, 0.4),
                                            rec("orc", "oracle", s, 0.0 if s == 3 else 0.5))]
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "results.json").write_text(json.dumps(SuiteResults(meta={"suite": "s"},
                                                                         records=records).to_json()))
    args = ["--from", str(tmp_path / "f"), "--label", "src", "--label", "m", "--label", "orc",
            "--seed-gap", "src", "orc"]
    assert main(args) == 0
    m_line = next(line for line in capsys.readouterr().out.splitlines() if "`m`" in line)
    assert "(n=4)" in m_line and m_line.endswith("(n=3 of 4) |")
    assert main([*args, "--defined-gap-only"]) == 0
    out = capsys.readouterr().out
    m_line = next(line for line in out.splitlines() if "`m`" in line)
    # seeds 0-2 only: (0.4 - 0.21) / (0.5 - 0.21) of the means; each seed's own fraction, all three read
    assert "0.400 ± 0.000 (n=3)" in m_line and "65.5 %" in m_line and "(n=3 of" not in m_line
    assert "Left out of every row" in out and "`t` seed 3 (src 0.230, orc 0.000)" in out
    with pytest.raises(SystemExit):
        main(["--from", str(tmp_path / "f"), "--label", "m", "--defined-gap-only"])
    assert "--seed-gap" in capsys.readouterr().err


def test_tables_generated_from_kept_results_match_the_docs(capsys: pytest.CaptureFixture[str]) -> None:
    """A page's table whose command reads results kept in the repository (``--from docs/data/...``) is what
    that command prints today: the page was pasted from the command, not edited by hand."""
    import re
    import shlex

    from summary_table import main

    root = Path(__file__).resolve().parents[2]
    checked = 0
    for page in sorted((root / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for command in re.findall(r"Generated by `python scripts/summary_table.py ([^`]*)`", text):
            argv = shlex.split(command)
            folders = [argv[i + 1] for i, a in enumerate(argv) if a == "--from"]
            if not folders or not all(f.startswith("docs/data/") for f in folders):
                continue
            if "--plot" in argv:  # the figure is checked in; the table is what is compared
                i = argv.index("--plot")
                del argv[i:i + 2]
            argv = [str(root / a) if a in folders else a for a in argv]
            capsys.readouterr()
            assert main(argv) == 0, command
            table = [line for line in capsys.readouterr().out.splitlines()
                     if line.startswith(("|", "Left out of every row"))]
            assert table and all(line in text for line in table), f"{page.name}: {command}"
            checked += 1
    assert checked >= 1

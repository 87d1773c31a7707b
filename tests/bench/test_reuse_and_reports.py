"""Evaluate-only and shared runs, every network, controls and paired columns, diagnostics, checkpoint noise,
tracks, the multi-suite report and the gap-anatomy document, all through the fake engine (no training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voxuda.bench.diagnostics import run_diagnostics
from voxuda.bench.executor import EVALPOINTS
from voxuda.bench.report import anatomy_steps, load_results, write_document
from voxuda.bench.results import EvalRecord, SuiteResults, aggregate, schedule_key
from voxuda.bench.runner import BenchmarkOptions, run_benchmark
from voxuda.bench.suite import builtin_suites, expand, load_suite, parse_suite
from voxuda.bench.tables import notes
from voxuda.cli import main
from voxuda.errors import ConfigError

from .fakes import FakeEngine, run_label

SUITE = """
name = "reuse"
track = "{track}"
[defaults]
preset = "tiny"
targets = ["t1", "t2"]
seeds = {seeds}
test_time_denoisers = ["identity"]
[defaults.trainer]
steps = 40
[defaults.method]
backbone = {{name = "unet3d", widths = [4, 8]}}

[[runs]]
label = "source_only"
method = "source_only"
shared = true

[[runs]]
label = "aligned"
method = "source_only"
init_from = "source_only"
train = false
overrides = {{"data.box" = 24}}   # stands for another data-side setting (e.g. data.alignment)

[[runs]]
label = "adapted"
method = {{name = "mean_teacher", ema_momentum = 0.9}}
init_from = "source_only"
overrides = {{"trainer.steps" = 10}}

[[runs]]
label = "source_only_cont"
method = "source_only"
init_from = "source_only"
overrides = {{"trainer.steps" = 10}}

[[runs]]
label = "oracle"
method = "oracle"
selection = "last"
"""

#: Per label and seed (identity input, reported network, selected checkpoint). adapted - control =
#: [0.02, 0.05, 0.03] (the hand example: n.s.); adapted - parent = [0.10, 0.10, 0.14] (significant).
SCRIPTED = {"source_only": [0.50, 0.52, 0.49], "aligned": [0.55, 0.58, 0.56], "adapted": [0.60, 0.62, 0.63],
            "source_only_cont": [0.58, 0.57, 0.60], "oracle": [0.80, 0.81, 0.79]}


def scripted(config: dict[str, Any], run_dir: Path, checkpoint: Path, denoiser: Any,
             network: str | None) -> float:
    """Scores keyed by the label of the run that *owns* the weights: a reused checkpoint scores as its owner
    would, except that evaluate-only runs (another config) get their own row of SCRIPTED."""
    label = run_label(run_dir)
    dice = SCRIPTED[label][config["seed"]]
    if checkpoint.parent.name == EVALPOINTS:  # checkpoint noise points: step-dependent
        dice += {10: -0.02, 20: 0.01, 30: 0.0, 40: 0.01}.get(int(checkpoint.stem[4:]), 0.0)
    if network == "student":
        dice -= 0.1
    return dice


def make_suite(tmp_path: Path, *, seeds: int = 3, track: str = "content", name: str = "reuse") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SUITE.format(seeds=seeds, track=track).replace('name = "reuse"', f'name = "{name}"'))
    return path


def options(out: Path, **kw: Any) -> BenchmarkOptions:
    return BenchmarkOptions(out_dir=out, data_root=out.parent / "data", plots=False, progress=False, **kw)


Reuse = tuple[Path, FakeEngine, Any]


@pytest.fixture
def reuse_run(tmp_path: Path) -> Reuse:
    engine = FakeEngine(evalpoints=4, dice=scripted)
    engine.metrics["adapted"] = [{"step": s, "loss": 1.0, "domain_accuracy": 0.9 if s <= 8 else 0.52,
                                  "pseudo_fg_fraction": 0.01, "teacher_fg_fraction": 0.02}
                                 for s in range(1, 11)]
    engine.run_json["adapted"] = {"drift": {"student": 0.18, "teacher": 0.049}}
    out = tmp_path / "out"
    result = run_benchmark(load_suite(make_suite(tmp_path)), options(out), engine)
    return out, engine, result


def test_shared_run_trains_once_and_evaluate_only_trains_nothing(reuse_run: Reuse) -> None:
    out, engine, result = reuse_run
    trained = sorted(str(Path(c[0]).relative_to(out / "runs")) for c in engine.train_calls)
    # source_only: 3 seeds on t1 only; adapted, control, oracle: per target and seed; aligned: never
    assert [t for t in trained if "/source_only/" in t] == [f"t1/source_only/seed{k}" for k in range(3)]
    assert len(trained) == 3 + 3 * 2 * 3
    assert not [t for t in trained if "aligned" in t]
    assert sorted(result.reused) == sorted([f"t2/source_only/seed{k}" for k in range(3)]
                                           + [f"{t}/aligned/seed{k}" for t in ("t1", "t2") for k in range(3)])
    # children on t2 warm-start from the checkpoint trained on t1
    t2_children = [c for c in engine.train_calls if "/t2/" in c[0] and "adapted" in c[0]]
    assert all(str(c[2]).endswith("t1/source_only/seed" + c[0][-1] + "/best.pt") for c in t2_children)
    bench = json.loads((out / "runs/t2/source_only/seed1/bench.json").read_text())
    assert bench["mode"] == "shared" and bench["weights_from"] == "t1/source_only/seed1"
    assert bench["reused_checkpoint"].endswith("t1/source_only/seed1/best.pt")
    assert not (out / "runs/t2/source_only/seed1/last.pt").exists()  # nothing trained there


def test_evaluate_only_run_scores_the_parents_checkpoint_under_its_own_config(reuse_run: Reuse) -> None:
    out, engine, _ = reuse_run
    calls = [c for c in engine.eval_calls if "/t2/aligned/seed0" in c[0] and c[1].endswith("best.pt")]
    assert calls and all(c[1].endswith("t1/source_only/seed0/best.pt") for c in calls)
    assert all(c[3]["data"]["box"] == 24 and c[3]["data"]["target_domain"] == "t2" for c in calls)
    bench = json.loads((out / "runs/t2/aligned/seed0/bench.json").read_text())
    assert bench["mode"] == "evaluate_only" and bench["weights_from"] == "t2/source_only/seed0"
    # regret of a reused run: the owner's kept eval points, re-scored on this run's target
    index = json.loads((out / "runs/t2/source_only/seed0" / EVALPOINTS / "index.json").read_text())
    assert sorted(int(s) for s in index) == [10, 20, 30, 40]
    kept = out / "runs/t2/source_only/seed0" / EVALPOINTS / index["40"]["file"]
    assert ("t2", str(kept)) in engine.oracle_calls
    assert (out / "runs/t2/source_only/seed0" / EVALPOINTS / index["40"]["file"]).resolve() == \
        (out / "runs/t1/source_only/seed0" / EVALPOINTS / "step0000040.pt").resolve()
    records = json.loads((out / "runs/t2/source_only/seed0/eval.json").read_text())["records"]
    assert {r["checkpoint"] for r in records} == {"selected", "oracle_choice", "evalpoint"}


def test_every_network_is_a_record_and_a_row(reuse_run: Reuse) -> None:
    out, engine, result = reuse_run
    records = json.loads((out / "runs/t1/adapted/seed0/eval.json").read_text())["records"]
    selected = {(r["network"], r["reported"]) for r in records if r["checkpoint"] == "selected"}
    assert selected == {("teacher", True), ("student", False)}
    oracle_choice = [r for r in records if r["checkpoint"] == "oracle_choice"]
    assert [(r["network"], r["reported"]) for r in oracle_choice] == [("teacher", True)]
    # the reported network goes through predictor() (network=None), the student by name
    nets = {c[2] for c in engine.eval_calls if "/t1/adapted/seed0" in c[0]}
    assert nets == {None, "student"}
    rows = {(r.label, r.network): r for r in result.rows if r.target == "t1"}
    assert rows[("adapted", "student")].display_label == "adapted [student]"
    assert rows[("adapted", "student")].dice_mean == pytest.approx(0.5167, abs=1e-4)
    md = (out / "results.md").read_text()
    assert "| adapted [student] | student |" in md and "| adapted | teacher (reported) |" in md
    assert "**student network**, not the method's reported one (teacher)" in md


def test_paired_columns_control_and_findings(reuse_run: Reuse) -> None:
    out, _, result = reuse_run
    rows = {(r.label, r.network): r for r in result.rows if r.target == "t1"}
    adapted = rows[("adapted", "teacher")]
    assert adapted.control == "source_only_cont"
    assert adapted.vs_control is not None and adapted.vs_control.mean == pytest.approx(0.0333, abs=1e-4)
    assert adapted.vs_control.low == pytest.approx(-0.0046, abs=1e-4) and not adapted.vs_control.significant
    assert adapted.vs_parent is not None and adapted.vs_parent.significant
    assert adapted.vs_baselines["aligned"].mean == pytest.approx(0.05333, abs=1e-5)  # [.05, .04, .07]
    assert rows[("source_only_cont", "student")].control is None  # the control is not its own control
    assert rows[("source_only", "student")].vs_parent is None
    assert adapted.gap_closed == pytest.approx((0.6167 - 0.5033) / (0.80 - 0.5033), abs=1e-3)
    md = (out / "results.md").read_text()
    for column in ("Δ vs control (95 % CI)", "Δ vs parent (95 % CI)", "Δ vs aligned (95 % CI)"):
        assert column in md
    assert "+0.033 [-0.005, +0.071] n.s." in md
    assert "**control** (the adaptation runs' extra steps" in md
    assert "evaluate-only: source_only's checkpoint" in md
    assert "within 1 std" not in md
    found = json.loads((out / "results.json").read_text())["findings"]
    line = next(f for f in found
                if f.startswith("t1: `adapted` (teacher network, the method's reported one; "))
    assert "vs control `source_only_cont`: no significant difference (+0.033 [-0.005, +0.071] n.s.)" in line
    assert "vs parent `source_only`: significantly better" in line
    assert "vs baseline `aligned`: " in line
    csv_head = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"network", "delta_vs_control_ci_low", "delta_vs_parent_significant"} <= set(csv_head)


def test_diagnostics_flag_a_discriminator_at_chance(reuse_run: Reuse) -> None:
    out, _, result = reuse_run
    data = json.loads((out / "results.json").read_text())
    diag = data["diagnostics"]["t1/adapted/seed0"]
    assert diag["domain_accuracy_tail"] == pytest.approx(0.52)  # steps 9, 10 = the last 20 % of 10
    assert diag["drift"] == {"student": 0.18, "teacher": 0.049}
    row = next(r for r in data["rows"]
               if r["label"] == "adapted" and r["reported_network"] and r["target"] == "t1")
    assert row["pseudo_fg_fraction"] == pytest.approx(0.01) and row["drift_teacher"] == pytest.approx(0.049)
    md = (out / "results.md").read_text()
    assert "**discriminator at chance** (acc 0.52)" in md
    assert "pseudo-label fg 1.00%, teacher fg 2.00%" in md
    assert "drift from warm start student 0.180, teacher 0.049" in md


def test_diagnostics_from_a_synthetic_log(tmp_path: Path) -> None:
    lines = [{"step": s, "loss": 1.0, "domain_accuracy": 0.95 if s <= 80 else 0.55} for s in range(1, 101)]
    lines.insert(50, {"step": 50, "event": "validation", "criterion": "source_val", "score": 0.4})
    lines.append({"step": 100, "event": "validation", "criterion": "source_val", "score": 0.45})
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{torn")
    diag = run_diagnostics(tmp_path)
    assert diag["domain_accuracy_tail"] == pytest.approx(0.55)
    assert diag["validation"] == {"criterion": "source_val", "steps": [50, 100], "best_score": 0.45,
                                  "best_step": 100}
    learned = run_diagnostics_of([{"step": s, "domain_accuracy": 0.8} for s in range(1, 11)], tmp_path / "b")
    assert learned["domain_accuracy_tail"] == pytest.approx(0.8)
    row = aggregate([EvalRecord(suite="s", target="t", label="dann", method="dann", seed=0,
                                input_denoiser="identity", selection="source_val", checkpoint="selected",
                                step=100, dice=0.2, iou=0.1)], diagnostics={"t/dann/seed0": diag})[0]
    assert "**discriminator at chance** (acc 0.55)" in notes(row)
    assert "at chance" not in notes(aggregate(row_records(), diagnostics={"t/dann/seed0": learned})[0])


def test_diagnostics_average_the_supervised_losses_over_the_last_fifth_of_steps(tmp_path: Path) -> None:
    """Where L_seg on the clean and the noised source and L_pseudo ended (docs/vox_uda.md quotes them as
    reasons)."""
    log = [{"step": s, "seg": 0.9 if s <= 80 else 0.2, "seg_noisy": 0.9 if s <= 80 else 0.3 + 0.01 * (s % 2),
            "pseudo": 0.5 if s <= 80 else 0.004, "con": 5.0} for s in range(1, 101)]
    tails = run_diagnostics_of(log, tmp_path / "a")["loss_tail"]
    assert tails == {"seg": pytest.approx(0.2), "seg_noisy": pytest.approx(0.305),
                     "pseudo": pytest.approx(0.004)}
    assert "loss_tail" not in run_diagnostics_of([{"step": s, "loss": 1.0} for s in range(1, 11)],
                                                 tmp_path / "b")


def run_diagnostics_of(records: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return run_diagnostics(folder)


def row_records() -> list[EvalRecord]:
    return [EvalRecord(suite="s", target="t", label="dann", method="dann", seed=0, input_denoiser="identity",
                       selection="source_val", checkpoint="selected", step=100, dice=0.2, iou=0.1)]


def test_checkpoint_noise_parent_source_val_and_selection_rules(reuse_run: Reuse) -> None:
    out, engine, result = reuse_run
    # the parent's last 3 of 4 kept eval points are scored on the test split, the first one never
    evaluated = {int(Path(c[1]).stem[4:]) for c in engine.eval_calls
                 if "/t1/source_only/seed0" in c[0] and EVALPOINTS in c[1]}
    assert evaluated == {20, 30, 40}
    records = json.loads((out / "runs/t1/source_only/seed0/eval.json").read_text())["records"]
    assert sorted(r["step"] for r in records if r["checkpoint"] == "evalpoint") == [20, 30, 40]
    summary = result.results.summaries["t1"]
    # per seed: offsets +0.01, 0.0, +0.01 -> std 0.005774, range 0.01 (the same for every seed)
    assert summary.noise_std == pytest.approx(0.005774, abs=1e-6)
    assert summary.noise_range == pytest.approx(0.01)
    assert summary.noise_steps == (20, 30, 40) and summary.noise_seeds == 3
    assert summary.parent == "source_only"
    assert summary.parent_source_val == pytest.approx((0.74, 0.0))  # the fake logs 0.7 + 0.01 k, k = 1..4
    md = (out / "results.md").read_text()
    assert "**checkpoint noise** of `source_only`" in md and "std 0.006, max − min 0.010" in md
    assert "held-out source-validation Dice 0.740" in md
    assert "source_only: checkpoint = best source_val of steps 10, 20, 30, 40" in md
    assert "trained once on t1 and shared" in md
    assert "oracle: checkpoint = the last step" in md


def test_rerun_resumes_and_old_trained_folders_are_kept(tmp_path: Path) -> None:
    path = make_suite(tmp_path, seeds=1)
    unshared = tmp_path / "unshared.toml"
    unshared.write_text(path.read_text().replace("shared = true\n", ""))
    out = tmp_path / "out"
    first = FakeEngine(dice=scripted)
    run_benchmark(load_suite(unshared), options(out), first)
    assert sum("source_only/" in c[0] and "cont" not in c[0] for c in first.train_calls) == 2  # per target
    again = FakeEngine(dice=scripted)
    result = run_benchmark(load_suite(path), options(out), again)  # now shared: old folders are kept
    assert again.train_calls == [] and result.reused == [] and len(result.skipped) == 10


def test_shared_is_ignored_when_selection_looks_at_the_target(tmp_path: Path) -> None:
    suite = load_suite(make_suite(tmp_path, seeds=1), sets=['selection="entropy"'])
    plans = expand(suite, targets=["t1", "t2"], data_root=tmp_path)
    modes = {(p.target, p.label): p.mode for p in plans}
    assert modes[("t2", "source_only")] == "train" and modes[("t2", "aligned")] == "evaluate_only"
    dry = run_benchmark(suite, options(tmp_path / "o", dry_run=True, targets=("t1", "t2")), FakeEngine())
    assert "t2/aligned/seed0  " in dry.table
    assert "mode=evaluate_only  weights_from=t2/source_only/seed0" in dry.table


def test_an_evaluate_only_row_is_recorded_under_the_selection_of_its_checkpoint(tmp_path: Path) -> None:
    suite = parse_suite({"defaults": {"selection": "source_val"}, "runs": [
        {"label": "parent", "method": "source_only"},
        {"label": "adapted", "method": "dann", "init_from": "parent", "selection": "entropy"},
        {"label": "adapted_readout", "method": "dann", "init_from": "adapted", "train": False},
        {"label": "parent_readout", "method": "source_only", "init_from": "parent", "train": False}]})
    plans = {p.label: p for p in expand(suite, targets=["t1"], data_root=tmp_path)}
    assert plans["adapted_readout"].selection == "entropy"
    assert plans["adapted_readout"].config["evaluation"]["selection"] == "entropy"
    assert plans["parent_readout"].selection == "source_val"


RESELECT = """
name = "reselect"
[defaults]
preset = "tiny"
targets = ["t1"]
seeds = 2
selection = "source_val"
test_time_denoisers = ["identity"]
[defaults.trainer]
steps = 40
[[runs]]
label = "adapted"
method = "mean_teacher"
selection = "entropy"
[[runs]]
label = "adapted_same"       # the parent's own criterion: its selected checkpoint, nothing re-scored
method = "mean_teacher"
init_from = "adapted"
train = false
selection = "entropy"
[[runs]]
label = "adapted_proxy"      # another criterion: chooses among the parent's kept eval points
method = "mean_teacher"
init_from = "adapted"
train = false
selection = "noisy_source_val"
[[runs]]
label = "adapted_proxy_readout"   # a readout of the re-selected run follows its choice
method = "mean_teacher"
init_from = "adapted_proxy"
train = false
overrides = {"data.box" = 24}
"""


def test_an_evaluate_only_row_with_its_own_selection_chooses_among_the_parents_eval_points(
        tmp_path: Path) -> None:
    (tmp_path / "reselect.toml").write_text(RESELECT)
    engine = FakeEngine(evalpoints=4)
    engine.validator = {10: 0.1, 20: 0.7, 30: 0.7, 40: 0.2}.get  # first of the best: step 20
    out = tmp_path / "out"
    suite = load_suite(tmp_path / "reselect.toml")
    assert "reselects" in run_benchmark(suite, options(out, dry_run=True), engine).table
    run_benchmark(suite, options(out), engine)
    assert len(engine.train_calls) == 2  # the parent, per seed; nothing else trains
    for seed in range(2):
        run = out / f"runs/t1/adapted_proxy/seed{seed}"
        selected = [c[1] for c in engine.eval_calls if c[0] == str(run)]
        chosen = run / EVALPOINTS / "../../../adapted" / f"seed{seed}" / EVALPOINTS / "step0000020.pt"
        assert Path(selected[0]).resolve() == chosen.resolve()
        index = json.loads((run / EVALPOINTS / "index.json").read_text())
        assert [index[s]["noisy_source_val"] for s in ("10", "20", "30", "40")] == [0.1, 0.7, 0.7, 0.2]
        records = json.loads((run / "eval.json").read_text())["records"]
        selected_records = [r for r in records if r["checkpoint"] == "selected"]
        assert {r["selection"] for r in selected_records} == {"noisy_source_val"}
        assert {r["step"] for r in selected_records} == {20}
        assert {r["step"] for r in records if r["checkpoint"] == "oracle_choice"} == {40}
        readout = out / f"runs/t1/adapted_proxy_readout/seed{seed}"
        assert [c[1] for c in engine.eval_calls if c[0] == str(readout)][0] == selected[0]
        same = out / f"runs/t1/adapted_same/seed{seed}"
        same_calls = [c[1] for c in engine.eval_calls if c[0] == str(same)]
        assert same_calls[0].endswith(f"adapted/seed{seed}/best.pt")
    # the parent's criterion re-scores nothing; the new one scores each kept point once per seed
    assert {c[0] for c in engine.validator_calls} == {"noisy_source_val"}
    assert len(engine.validator_calls) == 2 * 4


def test_reselection_needs_the_parents_eval_points(tmp_path: Path) -> None:
    (tmp_path / "reselect.toml").write_text(RESELECT)
    engine = FakeEngine(evalpoints=0)
    with pytest.raises(ConfigError, match="adapted_proxy/seed0: selection 'noisy_source_val' chooses among "
                                          ".* kept none"):
        run_benchmark(load_suite(tmp_path / "reselect.toml"), options(tmp_path / "out"), engine)


def test_reuse_errors_name_the_run() -> None:
    with pytest.raises(ConfigError, match="train = false needs init_from"):
        parse_suite({"runs": [{"label": "a", "method": "source_only", "train": False}]})
    with pytest.raises(ConfigError, match="its method must be 'source_only'"):
        parse_suite({"runs": [{"label": "a", "method": "source_only"},
                              {"label": "b", "method": "dann", "init_from": "a", "train": False}]})
    with pytest.raises(ConfigError, match="set shared = true on 'a'"):
        parse_suite({"runs": [{"label": "a", "method": "source_only"},
                              {"label": "b", "method": "source_only", "init_from": "a", "shared": True}]})
    with pytest.raises(ConfigError, match="train must be true or false"):
        parse_suite({"runs": [{"label": "a", "method": "source_only", "train": "no"}]})
    with pytest.raises(ConfigError, match="track = 'visual' is not a track"):
        parse_suite({"track": "visual", "runs": [{"method": "source_only"}]})


def test_every_builtin_suite_with_warm_starts_has_a_matching_control(tmp_path: Path) -> None:
    for name in builtin_suites():
        plans = [p for p in expand(load_suite(name), targets=["x"], data_root=tmp_path) if p.seed == 0]
        children = [p for p in plans if p.init_from and p.trains]
        if not children:
            continue
        controls = [p for p in children if p.method == "source_only"]
        assert controls, f"{name}: warm-started runs but no source_only continuation control"
        steps = {p.config["trainer"]["steps"] for p in children}
        control_steps = controls[0].config["trainer"]["steps"]
        if name == "tiny":  # test suite: its two children use different tiny schedules; the control takes one
            assert control_steps in steps
        else:  # every warm-started run has a control trained on exactly its schedule
            schedules = {json.dumps(p.config["trainer"], sort_keys=True) for p in controls}
            for child in children:
                assert json.dumps(child.config["trainer"], sort_keys=True) in schedules, (name, child.label)


def test_a_method_is_paired_with_the_control_trained_on_its_own_schedule() -> None:
    def record(label: str, method: str, seed: int, dice: float, steps: int | None) -> EvalRecord:
        return EvalRecord(suite="s", target="t", label=label, method=method, seed=seed,
                          input_denoiser="identity", selection="target_combined", checkpoint="selected",
                          step=steps, dice=dice, iou=dice / 2, init_from=None if steps is None else "parent",
                          schedule="" if steps is None else schedule_key({"steps": steps, "progress": False}))

    records = []
    for seed in range(3):
        records += [record("parent", "source_only", seed, 0.2, None),
                    record("control_100", "source_only", seed, 0.25 + 0.01 * seed, 100),
                    record("control_600", "source_only", seed, 0.35 + 0.02 * seed, 600),
                    record("method_600", "vox_uda", seed, 0.40 + 0.02 * seed, 600)]
    rows = {row.label: row for row in aggregate(records)}
    assert rows["method_600"].control == "control_600"
    assert rows["method_600"].vs_control is not None
    assert rows["method_600"].vs_control.mean == pytest.approx(0.05)
    assert schedule_key({"steps": 600, "num_threads": 2}) == schedule_key({"steps": 600, "num_threads": 8})


def test_old_eval_records_load_as_the_reported_network() -> None:
    old = {"suite": "s", "target": "t", "label": "vox_uda", "method": "vox_uda", "seed": 0,
           "input_denoiser": "identity", "selection": "source_val", "checkpoint": "selected", "step": 100,
           "dice": 0.2, "iou": 0.1, "per_class": {}}
    record = EvalRecord.from_dict(old)
    assert record.reported and record.network == "" and record.mode == "train"
    row = aggregate([record])[0]
    assert row.display_label == "vox_uda" and row.network_name == "predictor"


def test_multi_suite_report_puts_the_appearance_track_first(tmp_path: Path) -> None:
    content = tmp_path / "content"
    appearance = tmp_path / "appearance"
    run_benchmark(load_suite(make_suite(tmp_path, seeds=2, track="content", name="cont")), options(content),
                  FakeEngine(dice=scripted))
    run_benchmark(load_suite(make_suite(tmp_path, seeds=2, track="appearance", name="app")),
                  options(appearance), FakeEngine(dice=scripted))
    doc = tmp_path / "docs" / "results.md"
    code = main(["benchmark", "--from", str(content), "--from", str(appearance), "--write-doc", str(doc)])
    assert code == 0
    text = doc.read_text()
    assert text.index("## Appearance track: suite `app`") < text.index("## Content track: suite `cont`")
    assert text.count("Δ vs control (95 % CI)") == 4  # two targets per suite
    assert "### Target domain `t1`" in text and "**parent** `source_only`" in text
    assert main(["benchmark", "--from", str(content)]) == 2  # needs --write-doc
    assert main(["benchmark", "--from", str(tmp_path / "nowhere"), "--write-doc", str(doc)]) == 2
    reloaded = load_results(content)
    assert [r.display_label for r in reloaded.rows] == [r.display_label for r in load_results(content).rows]
    assert reloaded.track == "content"


def anatomy_records() -> tuple[list[EvalRecord], dict[str, Any]]:
    """Source-only on a 3-step chain (2 seeds) and the oracle; step 0 = source_val 0.80 / 0.78."""
    so = {"a1": [0.70, 0.68], "a2": [0.50, 0.52], "a3": [0.45, 0.42]}
    oracle = {"a1": [0.85, 0.85], "a2": [0.80, 0.80], "a3": [0.75, 0.75]}
    records = []
    for target in ("a1", "a2", "a3"):
        for seed in (0, 1):
            for label, table in (("source_only", so), ("oracle", oracle)):
                records.append(EvalRecord(suite="anat", target=target, label=label, method=label, seed=seed,
                                          input_denoiser="identity", selection="source_val",
                                          checkpoint="selected", step=100, dice=table[target][seed], iou=0.1))
    diagnostics = {f"a1/source_only/seed{k}": {"validation": {"criterion": "source_val", "steps": [50, 100],
                                                              "best_score": v, "best_step": 100}}
                   for k, v in ((0, 0.80), (1, 0.78))}
    return records, diagnostics


def test_anatomy_attributes_the_gap_knob_by_knob(tmp_path: Path) -> None:
    records, diagnostics = anatomy_records()
    results = SuiteResults(meta={"suite": "anat", "track": "anatomy", "targets": ["a1", "a2", "a3"],
                                 "knobs": {"a1": "noise level", "a2": "CTF", "a3": "crowding"}},
                           records=records, diagnostics=diagnostics)
    steps = anatomy_steps(results)
    assert [s.domain for s in steps][1:] == ["a1", "a2", "a3"] and steps[0].domain.startswith("source")
    assert [s.knob for s in steps] == ["", "noise level", "CTF", "crowding"]
    total = 0.79 - 0.435
    assert [round(s.drop, 4) for s in steps[1:]] == [0.1, 0.18, 0.075]
    assert steps[2].share == pytest.approx(0.18 / total)
    assert sum(s.share for s in steps[1:]) == pytest.approx(1.0)
    assert steps[3].oracle == pytest.approx(0.75)
    assert steps[1].drop_interval is not None and steps[1].drop_interval.n == 2
    doc = tmp_path / "docs" / "anatomy.md"
    write_document(doc, [(tmp_path, results)])
    text = doc.read_text()
    assert text.startswith("# Gap anatomy: suite `anat`")
    assert "| 2 | `a2` | CTF | 0.510 ± 0.014 | 0.800 |" in text
    assert "![gap anatomy](img/results_anat/anatomy.png)" in text
    assert (tmp_path / "docs" / "img" / "results_anat" / "anatomy.png").stat().st_size > 1000
    assert "`a2` (CTF): drop +0.180, 51% of the gap" in text


def test_a_target_subset_reuses_the_suites_shared_checkpoint(tmp_path: Path) -> None:
    suite = load_suite(make_suite(tmp_path, seeds=1))
    out = tmp_path / "out"
    fresh = FakeEngine(dice=scripted)
    result = run_benchmark(suite, options(out, targets=("t2",)), fresh)
    trained = {str(Path(c[0]).relative_to(out / "runs")) for c in fresh.train_calls}
    assert "t1/source_only/seed0" in trained and "t2/source_only/seed0" not in trained  # trained where shared
    assert not any(t.startswith("t1/") and "source_only/" not in t for t in trained)
    assert {r.target for r in result.records} == {"t2"}  # the support run is not reported
    full = FakeEngine(dice=scripted)
    run_benchmark(suite, options(out), full)  # the whole suite afterwards: only t1's other runs train
    assert {str(Path(c[0]).relative_to(out / "runs")) for c in full.train_calls} == {
        "t1/adapted/seed0", "t1/source_only_cont/seed0", "t1/oracle/seed0"}
    again = FakeEngine(dice=scripted)
    run_benchmark(suite, options(out, targets=("t2",)), again)
    assert again.train_calls == []


def test_another_readout_of_a_trained_run_is_paired_like_the_run() -> None:
    """An evaluate-only row on a method's weights (a test-time readout) gets the method's control and the
    parent's baselines, not a blank "vs control" because its init_from is the method, not the parent."""
    def record(label: str, method: str, seed: int, dice: float, steps: int | None, init_from: str | None,
               mode: str = "train") -> EvalRecord:
        return EvalRecord(suite="s", target="t", label=label, method=method, seed=seed,
                          input_denoiser="identity", selection="target_combined", checkpoint="selected",
                          step=steps, dice=dice, iou=dice / 2, init_from=init_from, mode=mode,
                          schedule="" if steps is None else schedule_key({"steps": steps}))

    records = []
    for seed in range(3):
        records += [record("parent", "source_only", seed, 0.2, None, None),
                    record("aligned", "source_only", seed, 0.22 + 0.01 * seed, None, "parent",
                           "evaluate_only"),
                    record("control_600", "source_only", seed, 0.35 + 0.02 * seed, 600, "parent"),
                    record("method_600", "vox_uda", seed, 0.40 + 0.02 * seed, 600, "parent"),
                    record("method_600_tta", "vox_uda", seed, 0.41 + 0.03 * seed, 600, "method_600",
                           "evaluate_only")]
    rows = {row.label: row for row in aggregate(records)}
    readout = rows["method_600_tta"]
    assert readout.control == "control_600" and readout.vs_control is not None
    assert readout.vs_control.mean == pytest.approx(0.07)
    assert set(readout.vs_baselines) == {"aligned"}
    assert readout.vs_baselines["aligned"].mean == pytest.approx(0.21)
    assert readout.vs_parent is not None and readout.vs_parent.mean == pytest.approx(0.02)  # vs the method
    assert rows["method_600"].control == "control_600"

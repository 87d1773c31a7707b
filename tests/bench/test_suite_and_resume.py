"""Suite parsing/composition and the runner's resume logic, with a fake engine (no training, fast)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voxuda.bench.runner import BenchmarkOptions, run_benchmark
from voxuda.bench.suite import builtin_suites, expand, load_suite, parse_suite
from voxuda.errors import ConfigError

from .fakes import FakeEngine

SUITE = """
name = "fake"
[defaults]
preset = "tiny"
targets = ["t1", "t2"]
seeds = 2
test_time_denoisers = ["identity", {name = "gaussian", sigma = 1.0}]
[defaults.trainer]
steps = 10
[defaults.method]
backbone = {name = "unet3d", widths = [4, 8]}

[[runs]]
label = "source_only"
method = "source_only"

[[runs]]
label = "adapted"
method = {name = "mean_teacher", ema_momentum = 0.9}
init_from = "source_only"
overrides = {"trainer.steps" = 5}

[[runs]]
label = "oracle"
method = "oracle"
selection = "last"
"""


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "fake.toml"
    path.write_text(SUITE)
    return path


def options(tmp_path: Path, **kw: Any) -> BenchmarkOptions:
    return BenchmarkOptions(out_dir=tmp_path / "out", data_root=tmp_path / "data", plots=False,
                            progress=False, **kw)


def test_builtin_suites_parse_and_expand(tmp_path: Path) -> None:
    names = builtin_suites()
    for required in ("tiny", "quick", "paper"):
        assert required in names
    for name in names:
        suite = load_suite(name)
        plans = expand(suite, targets=["x"], data_root=tmp_path)
        labels = {p.label for p in plans}
        assert any(p.method == "source_only" for p in plans), name
        # every comparison table must hold the "source-only + test-time Gaussian" baseline row (an anatomy
        # suite compares domains, not methods)
        if suite.track != "anatomy":
            assert any(d.name == "gaussian" for d in suite.test_time_denoisers), name
        for p in plans:  # warm-start parents come first
            if p.init_from:
                assert p.init_from in labels


def test_expansion_orders_parents_first_and_merges_configs(suite_file: Path, tmp_path: Path) -> None:
    suite = load_suite(suite_file)
    plans = expand(suite, targets=["t1"], seeds=1, data_root=tmp_path)
    assert [p.label for p in plans] == ["source_only", "adapted", "oracle"]
    adapted = plans[1]
    assert adapted.config["method"] == {"backbone": {"name": "unet3d", "widths": [4, 8]},
                                        "name": "mean_teacher", "ema_momentum": 0.9}
    assert adapted.config["trainer"]["steps"] == 5 and plans[0].config["trainer"]["steps"] == 10
    assert adapted.config["data"]["target_domain"] == "t1"
    assert plans[2].selection == "last" and plans[0].selection == "source_val"


def test_suite_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="init_from"):
        parse_suite({"runs": [{"method": "dann", "init_from": "nope"}]})
    with pytest.raises(ConfigError, match="unknown key defaults.step"):
        parse_suite({"defaults": {"step": 3}, "runs": [{"method": "dann"}]})
    with pytest.raises(ConfigError, match="used twice"):
        parse_suite({"runs": [{"method": "dann"}, {"method": "dann"}]})
    with pytest.raises(ConfigError, match="built-in suite"):
        load_suite(tmp_path / "missing.toml")


def test_include_and_drop_compose_suites(tmp_path: Path, suite_file: Path) -> None:
    child = tmp_path / "child.toml"
    child.write_text('include = "fake.toml"\nname = "child"\ndrop = ["oracle"]\n[defaults]\nseeds = 3\n'
                     '[[runs]]\nlabel = "dann"\nmethod = "dann"\n')
    suite = load_suite(child)
    assert suite.seeds == 3 and suite.preset == "tiny"
    assert [r.label for r in suite.runs] == ["source_only", "adapted", "dann"]


def test_resume_does_not_repeat_finished_runs(tmp_path: Path, suite_file: Path) -> None:
    suite = load_suite(suite_file)
    engine = FakeEngine(fail_on="t2/adapted/seed1")
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(suite, options(tmp_path), engine)
    finished = len(engine.train_calls) - 1
    assert finished == 3 * 2 + 3 + 1  # t1: 3 runs x 2 seeds; t2: seed 0, seed 1 source_only; adapted fails
    engine2 = FakeEngine()
    result = run_benchmark(suite, options(tmp_path), engine2)
    trained = [c[0] for c in engine2.train_calls]
    assert len(trained) == 12 - finished  # only the unfinished runs
    interrupted = [c for c in engine2.train_calls if "t2/adapted/seed1" in c[0]]
    assert interrupted and interrupted[0][1] is True  # resumed, since it left a last.pt
    assert interrupted[0][2] is not None and "t2/source_only/seed1" in str(interrupted[0][2])
    assert len(result.skipped) == finished
    engine3 = FakeEngine()
    run_benchmark(suite, options(tmp_path), engine3)
    assert engine3.train_calls == []  # everything done: nothing retrained, tables rebuilt


def test_tables_gap_closed_and_flags(tmp_path: Path, suite_file: Path) -> None:
    suite = load_suite(suite_file)
    result = run_benchmark(suite, options(tmp_path, targets=("t1",)), FakeEngine())
    out = tmp_path / "out"
    for name in ("results.csv", "results.json", "results.md"):
        assert (out / name).is_file()
    rows = json.loads((out / "results.json").read_text())["rows"]
    by = {(r["label"], r["input_denoiser"]): r for r in rows if r["reported_network"]}
    assert set(by) == {(lab, den) for lab in ("source_only", "adapted", "oracle")
                       for den in ("identity", "gaussian(sigma=1.0)")}
    student = [r for r in rows if not r["reported_network"]]  # mean teacher: its student is a row too
    assert {(r["label"], r["network"]) for r in student} == {("adapted", "student")}
    assert by[("adapted", "identity")]["network"] == "teacher"
    so, orc = by[("source_only", "identity")], by[("oracle", "identity")]
    assert so["gap_closed"] == pytest.approx(0.0) and orc["gap_closed"] == pytest.approx(1.0)
    assert by[("adapted", "identity")]["gap_closed"] == pytest.approx(0.1 / 0.3)
    assert by[("source_only", "gaussian(sigma=1.0)")]["gap_closed"] == pytest.approx(0.05 / 0.3)
    assert orc["flag"] == "upper bound" and so["flag"] == ""
    assert so["selection_regret_dice"] == pytest.approx(0.02)  # fake: the last eval point scores 0.02 higher
    assert orc["selection_regret_dice"] is None  # the oracle selects nothing ('last'): no regret
    assert so["dice_mean"] == pytest.approx(0.505) and so["dice_std"] == pytest.approx(0.01 / 2**0.5)
    assert by[("adapted", "identity")]["init_from"] == "source_only"
    md = (out / "results.md").read_text()
    assert "oracle (upper bound)" in md and "warm start from source_only" in md
    assert "gaussian(sigma=1.0)" in result.table


def test_leaky_selection_is_flagged_everywhere(tmp_path: Path, suite_file: Path) -> None:
    suite = load_suite(suite_file, sets=['selection="target_oracle"'])
    run_benchmark(suite, options(tmp_path, targets=("t1",), seeds=1), FakeEngine())
    out = tmp_path / "out"
    rows = json.loads((out / "results.json").read_text())["rows"]
    so = next(r for r in rows if r["label"] == "source_only")
    assert so["selection_uses_target_labels"] is True
    assert "target labels used for selection" in (out / "results.md").read_text()
    assert "(LEAK)" in (out / "results.md").read_text()


def test_unknown_target_is_an_error(tmp_path: Path, suite_file: Path) -> None:
    suite = load_suite(suite_file)
    with pytest.raises(ConfigError, match="t9"):
        run_benchmark(suite, options(tmp_path, targets=("t9",)), FakeEngine())


def test_ablation_runs_follow_the_index_merge_rule(tmp_path: Path) -> None:
    from voxuda.bench.ablations import merge_method

    base = {"name": "vox_uda", "noise": {"name": "ngm", "n_samples": 10, "filter_rate": 0.244},
            "teacher_denoiser": {"name": "improved_bilateral", "sigma_range": 1.2}}
    merged = merge_method(base, {"noise": {"name": "ngm", "n_samples": 5},
                                 "teacher_denoiser": {"name": "bilateral"}})
    assert merged["noise"] == {"name": "ngm", "n_samples": 5, "filter_rate": 0.244}  # same name: merge
    assert merged["teacher_denoiser"] == {"name": "bilateral"}  # other component: replace
    suite = load_suite("ablation_components")
    plans = {p.label: p for p in expand(suite, targets=["x"], data_root=tmp_path)}
    assert {"source_only", "oracle", "abl_full", "abl_ngm_only", "abl_ngm_bilateral"} <= set(plans)
    dens = {label: plans[label].config["method"]["teacher_denoiser"]["name"]
            for label in ("abl_full", "abl_ngm_only", "abl_ngm_bilateral")}
    assert dens == {"abl_full": "improved_bilateral", "abl_ngm_only": "identity",
                    "abl_ngm_bilateral": "bilateral"}
    assert plans["abl_full"].init_from == "source_only" and plans["abl_full"].group == "components"
    assert plans["abl_full"].config["method"]["backbone"]["widths"] == [8, 16, 32]  # suite backbone kept


def test_a_finished_run_with_another_config_is_not_silently_reused(tmp_path: Path, suite_file: Path) -> None:
    suite = load_suite(suite_file)
    run_benchmark(suite, options(tmp_path, targets=("t1",), seeds=1), FakeEngine())
    with pytest.raises(ConfigError, match="another config"):
        changed = options(tmp_path, targets=("t1",), seeds=1, sets=("trainer.lr=0.5",))
        run_benchmark(suite, changed, FakeEngine())


def test_builtin_suites_only_read_files_a_wheel_ships() -> None:
    """The ablation suites read the ablation index and variants: they must live in the package, matched by
    the package-data globs, or `pip install voxuda` (no source checkout) could not run them."""
    import os
    from pathlib import PurePosixPath

    import voxuda
    from voxuda.bench.suite import find_suite
    from voxuda.config import load_toml

    package = Path(voxuda.__file__).resolve().parent
    pyproject = load_toml(package.parent / "pyproject.toml")
    globs = pyproject["tool"]["setuptools"]["package-data"]
    # setuptools globs do not cross "/": compare part by part (PurePosixPath.match), not with fnmatch
    patterns = [f"voxuda/{g}" for g in globs["voxuda"]]
    read: list[Path] = []
    for name in builtin_suites():
        data = load_toml(find_suite(name))
        spec = data.get("runs_from")
        if not spec:
            continue
        # normpath, not resolve(): the checkout's configs/ symlink must not hide a path out of the package
        index = Path(os.path.normpath(find_suite(name).parent / spec["index"]))
        entries = load_toml(index)
        read += [index, Path(os.path.normpath(index.parent / entries["base"]))]
        read += [Path(os.path.normpath(index.parent / e["file"])) for e in entries["ablation"]]
    assert len(read) > 20  # the seven ablation suites and their variants
    for path in read:
        assert path.is_relative_to(package), f"{path} lies outside the package"
        rel = "voxuda/" + path.relative_to(package).as_posix()
        assert any(PurePosixPath(rel).match(p) and rel.count("/") == p.count("/") for p in patterns), \
            f"{rel} matches no package-data glob"


def test_runs_trained_on_other_numerics_are_named_in_the_report_and_a_note(tmp_path: Path,
                                                                            suite_file: Path) -> None:
    """A folder whose runs were trained (or resumed) on other numerics says so: results.md's numerics line
    counts runs per numerics, and the benchmark adds a note; one machine's folder adds none."""
    suite = load_suite(str(suite_file))
    here = {"cpu": "CPU A", "cpu_capability": "AVX512", "threads": 2, "torch": "2.13.0", "env": {}}
    engine = FakeEngine()
    engine.run_json = {label: {"numerics": here} for label in ("source_only", "adapted", "oracle")}
    result = run_benchmark(suite, options(tmp_path, targets=("t1",)), engine)
    assert result.notes == []
    md = (tmp_path / "out" / "results.md").read_text()
    assert "- **numerics**: CPU A, AVX512, 2 threads, torch 2.13.0 (6 runs)" in md  # 3 labels x 2 seeds

    elsewhere = {**here, "cpu_capability": "AVX2"}
    engine = FakeEngine()
    engine.run_json = {"source_only": {"numerics": here},
                       "adapted": {"numerics": here, "resumed": [{"step": 2, "numerics": elsewhere}]},
                       "oracle": {}}  # a run of a voxuda that did not record numerics
    result = run_benchmark(suite, options(tmp_path / "mixed", targets=("t1",)), engine)
    assert len(result.notes) == 1 and "3 different numerics" in result.notes[0]
    md = (tmp_path / "mixed" / "out" / "results.md").read_text()
    assert ("CPU A, AVX512, 2 threads, torch 2.13.0 (4 runs); CPU A, AVX2, 2 threads, torch 2.13.0 (2 runs); "
            "unknown (2 runs)") in md


def test_a_later_seed_block_trains_only_its_seeds_and_pools_with_the_first(tmp_path: Path,
                                                                         suite_file: Path) -> None:
    """``--first-seed 2 --seeds 2`` trains seeds 2 and 3 (each warm start from its own seed's parent) and
    says so in the provenance; pooled with a block of seeds 0-1, every row has all four seeds."""
    from voxuda.bench.report import pool_seeds

    suite = load_suite(suite_file)
    engine = FakeEngine()
    later = run_benchmark(suite, options(tmp_path / "b", first_seed=2, targets=("t1",)), engine)
    trained = [str(c[0]) for c in engine.train_calls]
    assert len(trained) == 6 and all("seed2" in t or "seed3" in t for t in trained)
    adapted = [c for c in engine.train_calls if "adapted/seed3" in str(c[0])]
    assert "source_only/seed3" in str(adapted[0][2])
    assert later.results is not None and "2 seed(s) from seed 2" in later.results.meta["data"]
    run_benchmark(suite, options(tmp_path / "a", targets=("t1",)), FakeEngine())
    pooled = pool_seeds([tmp_path / "a" / "out", tmp_path / "b" / "out"])
    assert {r.seeds for r in pooled.rows} == {(0, 1, 2, 3)}
    with pytest.raises(ConfigError, match="--first-seed -1"):
        run_benchmark(suite, options(tmp_path / "c", first_seed=-1), FakeEngine())

"""A run that got no test voxel right is named in the findings, not hidden in its row's mean."""

from __future__ import annotations

from pathlib import Path

from voxuda.bench.results import EvalRecord, SuiteResults
from voxuda.bench.tables import findings, suite_sections


def _record(label: str, seed: int, dice: float, *, flag: str = "", reported: bool = True,
            denoiser: str = "identity", checkpoint: str = "selected") -> EvalRecord:
    return EvalRecord(suite="s", target="t", label=label, method=label, seed=seed, input_denoiser=denoiser,
                      selection="x", checkpoint=checkpoint, step=1, dice=dice, iou=0.0, flag=flag,
                      network="student", reported=reported)


def test_a_failed_oracle_seed_is_named_with_how_to_read_the_gap() -> None:
    records = [_record("source_only", s, 0.25) for s in range(3)]
    records += [_record("oracle", s, 0.0 if s == 1 else 0.42, flag="upper bound") for s in range(3)]
    records += [_record("m", s, 0.0 if s == 2 else 0.4) for s in range(3)]
    # not failures of the reported network on raw input: another network, a smoothed input, a checkpoint
    # that was not selected
    records += [_record("m", 0, 0.0, reported=False), _record("m", 0, 0.0, denoiser="gaussian"),
                _record("m", 1, 0.0, checkpoint="evalpoint")]
    found = [f for f in findings([], records) if "Dice 0.000" in f]
    assert len(found) == 2
    method, oracle = sorted(found)
    assert oracle.startswith("t: `oracle` seed 1 ") and "--defined-gap-only" in oracle
    assert method.startswith("t: `m` seed 2 ") and "upper end" not in method


def test_the_suite_report_carries_the_finding() -> None:
    records = [_record("source_only", s, 0.25) for s in range(2)]
    records += [_record("oracle", s, 0.0 if s == 0 else 0.42, flag="upper bound") for s in range(2)]
    text = "\n".join(suite_sections(SuiteResults(meta={"suite": "s"}, records=records)))
    assert "`oracle` seed 0 scores Dice 0.000" in text
    assert "seed 1 scores" not in text


def test_the_kept_full_rule_block_names_its_failed_oracle() -> None:
    """The case that asked for it: appear_noisier seed 11's oracle in the eleventh try's full rule."""
    from voxuda.bench.report import load_results

    folder = Path(__file__).resolve().parents[2] / "docs/data/appearance_noisyonly_full/both_s11"
    results = load_results(folder)
    found = [f for f in findings(results.rows, results.records) if "Dice 0.000" in f]
    assert len(found) == 1 and found[0].startswith("appear_noisier: `oracle` seed 11 ")

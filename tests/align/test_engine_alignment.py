"""Alignment where data are loaded: every split of a run, the test split, run.json and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_run_dict
from voxuda.align import build_aligner
from voxuda.align.spectrum import SpectrumMatch
from voxuda.config import load_toml
from voxuda.engine import data as engine_data
from voxuda.engine.data import ensure_aligned, load_domain, load_run_data, load_target
from voxuda.engine.evaluate import evaluate_run
from voxuda.engine.pipeline import train_and_evaluate
from voxuda.engine.run_config import run_config_from_dict
from voxuda.errors import ConfigError
from voxuda.testing import tiny_run_data


def _config(root: Path, alignment: object = "none", **trainer: object):  # type: ignore[no-untyped-def]
    data = tiny_run_dict(root, **trainer)  # type: ignore[arg-type]
    data["data"]["alignment"] = alignment
    return run_config_from_dict(data)


@pytest.fixture
def count_fits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """An empty fitted-aligner cache and a record of every SpectrumMatch.fit call (source, target sizes)."""
    monkeypatch.setattr(engine_data, "_FITTED", {})
    calls: list[tuple[int, int]] = []
    original = SpectrumMatch.fit

    def fit(self, source, target):  # type: ignore[no-untyped-def]
        calls.append((len(source), len(target)))
        original(self, source, target)

    monkeypatch.setattr(SpectrumMatch, "fit", fit)
    return calls


def test_default_loading_is_unchanged(tiny_dataset: Path) -> None:
    cfg = _config(tiny_dataset).data
    data = load_run_data(cfg, seed=0)
    raw = load_domain(cfg, tiny_dataset, "target", "train", with_labels=True)
    assert torch.equal(data.target_train.volumes, raw.volumes)
    assert data.alignment == {"aligner": {"name": "none"}, "state": {}}


def test_detrend_aligns_every_split(tiny_dataset: Path) -> None:
    cfg = _config(tiny_dataset, {"name": "detrend", "order": 2}).data
    data = load_run_data(cfg, seed=0)
    detrend = build_aligner({"name": "detrend", "order": 2})
    for split, domain, name in ((data.source_train, "source", "train"), (data.source_val, "source", "val"),
                                (data.target_train, "target", "train"), (data.target_val, "target", "val")):
        assert split is not None
        raw = load_domain(cfg, tiny_dataset, domain, name, with_labels=True)
        assert torch.equal(split.volumes, detrend.apply(raw.volumes, domain))  # type: ignore[arg-type]
        assert not torch.equal(split.volumes, raw.volumes)
        assert torch.equal(split.labels, raw.labels)  # type: ignore[arg-type]
    assert data.alignment == {"aligner": {"name": "detrend", "order": 2}, "state": {}}
    test = load_target(cfg, tiny_dataset, "test")
    raw_test = load_domain(cfg, tiny_dataset, "target", "test", with_labels=True)
    assert torch.equal(test.volumes, detrend.apply(raw_test.volumes, "target"))


def test_spectrum_match_is_fitted_once_on_train_splits_and_reused_for_test(
        tiny_dataset: Path, count_fits: list[tuple[int, int]]) -> None:
    cfg = _config(tiny_dataset, "spectrum_match").data
    data = load_run_data(cfg, seed=0)
    assert count_fits == [(8, 8)]  # the two train splits, volumes only
    assert data.alignment is not None
    state = data.alignment["state"]
    assert state["volumes"] == {"source": 8, "target": 8} and len(state["target_power"]) > 1
    aligner = build_aligner("spectrum_match")
    aligner.load_state(state)
    raw_test = load_domain(cfg, tiny_dataset, "target", "test", with_labels=True)
    expected = aligner.apply(raw_test.volumes, "target")
    assert torch.equal(load_target(cfg, tiny_dataset, "test").volumes, expected)  # cached fit
    assert torch.equal(load_target(cfg, tiny_dataset, "test", alignment=data.alignment).volumes, expected)
    assert count_fits == [(8, 8)]
    raw_val = load_domain(cfg, tiny_dataset, "source", "val", with_labels=True)
    assert data.source_val is not None
    assert torch.equal(data.source_val.volumes, aligner.apply(raw_val.volumes, "source"))


def test_a_short_training_records_the_aligner_and_evaluation_reuses_it(
        tiny_dataset: Path, tmp_path: Path, count_fits: list[tuple[int, int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tiny_dataset, {"name": "spectrum_match", "max_gain": 5}, steps=2)
    out = tmp_path / "run"
    result = train_and_evaluate(config, out)
    record = json.loads((out / "run.json").read_text())
    alignment = record["alignment"]
    assert alignment["aligner"] == {"name": "spectrum_match", "detrend": True, "order": 1, "max_gain": 5.0}
    assert len(alignment["state"]["source_power"]) == len(alignment["state"]["gain"]) > 1
    assert record["components"]["aligner"]["name"] == "spectrum_match"
    assert load_toml(out / "config.toml")["data"]["alignment"]["max_gain"] == 5.0
    assert result.evaluation is not None and result.evaluation["alignment"]["name"] == "spectrum_match"
    assert count_fits == [(8, 8)]  # fitted once for training; the end-of-run evaluation used the record
    # a fresh process: evaluation restores the recorded statistics instead of fitting again
    monkeypatch.setattr(engine_data, "_FITTED", {})
    again = evaluate_run(out, split="test", checkpoint="last")
    assert count_fits == [(8, 8)]
    assert again["alignment"]["name"] == "spectrum_match" and not again["alignment_override"]
    assert again["overall"] == result.evaluation["overall"]
    # the "+ alignment" baseline of a run: another aligner at test time, written to its own file
    other = evaluate_run(out, split="test", checkpoint="last", alignment="detrend")
    assert other["alignment"] == {"name": "detrend", "order": 1} and other["alignment_override"]
    assert (out / "eval_test_last_align-detrend.json").is_file()


def test_in_memory_data_are_aligned_by_the_trainer(tmp_path: Path) -> None:
    config = run_config_from_dict({
        "method": {"name": "source_only", "backbone": {"name": "unet3d", "widths": [4, 8]}},
        "data": {"root": str(tmp_path / "none"), "box": 8, "alignment": "detrend"},
        "trainer": {"steps": 1, "batch_size": 2, "progress": False, "num_threads": 1},
        "evaluation": {"batch_size": 2},
    })
    raw = tiny_run_data()
    result = train_and_evaluate(config, tmp_path / "run", data=raw)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["alignment"]["aligner"]["name"] == "detrend"
    assert result.evaluation is not None and result.evaluation["alignment"]["name"] == "detrend"
    aligned = ensure_aligned(raw, config.data)
    assert torch.equal(aligned.target_train.volumes, build_aligner("detrend").apply(raw.target_train.volumes,
                                                                                     "target"))
    assert ensure_aligned(aligned, config.data) is aligned
    spectrum = run_config_from_dict({"data": {"root": "/x", "alignment": "spectrum_match"}}).data
    with pytest.raises(ConfigError, match="data.alignment: the data were aligned with"):
        ensure_aligned(aligned, spectrum)

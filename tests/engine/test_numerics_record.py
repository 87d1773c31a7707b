"""run.json records the numerics a run trained on (CPU, instruction set, threads, kernel overrides), and a
resumed session its own: the same config and seed are only bit-reproducible when these agree too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from voxuda.engine.provenance import numerics, numerics_label
from voxuda.engine.run_config import run_config_from_dict
from voxuda.engine.trainer import train


def test_a_run_records_its_numerics_and_a_resume_its_own(run_dict, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = run_config_from_dict(run_dict(steps=4, checkpoint_every=2, num_threads=2))
    out = tmp_path / "run"
    previous = torch.get_num_threads()
    try:
        train(config, out, stop_after=2)
    finally:
        torch.set_num_threads(previous)
    first = json.loads((out / "run.json").read_text())["numerics"]
    assert first["threads"] == 2  # the run's threads, not the test process's
    assert first["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert first["torch"] == torch.__version__ and first["env"] == {}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN has chosen its kernels already; only recorded
    try:
        train(config, out, resume=True)
    finally:
        torch.set_num_threads(previous)
    record = json.loads((out / "run.json").read_text())
    assert record["numerics"] == first  # the start is kept
    resumed = record["resumed"][0]
    assert resumed["step"] == 2 and resumed["numerics"]["env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert numerics_label(resumed["numerics"]) != numerics_label(first)


def test_the_label_names_every_field_that_changes_the_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    base = numerics(threads=2)
    assert numerics_label(base) == numerics_label(numerics(threads=2))
    assert numerics_label(numerics(threads=1)) != numerics_label(base)
    assert numerics_label({**base, "cpu_capability": "AVX2"}) != numerics_label(base)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in numerics_label(numerics(threads=2))
    assert numerics_label(None) == "unknown"

"""benchmarks/bilateral_report.py: the performance.md section comes from the JSON, and only it changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from bilateral_report import HEADING, render, replace_section  # noqa: E402


def _report(numba_rate: float, sitk_ratio: float, load: float = 0.5) -> dict:
    window = {
        "window": 5, "taps": 125,
        "wall": {
            "mvox_s": {"simpleitk": 3.0, "numba_previous": 48.0, "numba": numba_rate, "ceiling": 150.0},
            "ratios": {"numba/simpleitk": sitk_ratio, "numba/numba_previous": numba_rate / 48.0,
                       "numba/ceiling": numba_rate / 150.0},
        },
        "probe_wall": {"fma_per_s": 1.2e11, "exp_per_s": 1.1e10, "fma_slots_per_tap": 4, "exps_per_tap": 1},
    }
    versions = {"python": "3.11", "torch": "2.13", "numba": "0.68", "llvmlite": "0.50", "numpy": "2.4",
                "SimpleITK": "2.5", "llvm_cpu": "emeraldrapids"}
    return {
        "command": "python benchmarks/bench_bilateral.py --json r.json", "date_utc": "2026-11-29T00:00:00",
        "machine": {"cpu": "Test CPU", "logical_cpus": 2, "versions": versions},
        "size": 128, "threads": 2, "rounds": 7, "load_average_before": [load], "load_average_after": [load],
        "windows": [window],
    }


def test_targets_are_judged_from_the_numbers():
    met = render(_report(80.0, 27.0), "r.json")
    assert "numba >= 72 Mvox/s: 80.0 Mvox/s, **met**" in met
    assert "27.0x, **met**" in met and "53 %, **met**" in met
    assert "loaded machine" not in met
    missed = render(_report(60.0, 20.0, load=6.5), "r.json")
    assert "60.0 Mvox/s, **not met**" in missed and "20.0x, **not met**" in missed
    assert "loaded machine" in missed and "1.25x" in missed  # numba / previous


def test_only_the_bilateral_section_is_replaced():
    training = "## Training throughput\n\nsamples/s table\n"
    doc = f"# Performance\n\n{training}\n{HEADING}\n\nold figures\n\n## Later section\n\nkept\n"
    new = replace_section(doc, f"{HEADING}\n\nnew figures\n")
    assert "old figures" not in new and "new figures" in new
    assert training in new and "## Later section\n\nkept\n" in new
    assert replace_section("", f"{HEADING}\n\nx\n") == f"{HEADING}\n\nx\n"
    assert replace_section(training, f"{HEADING}\n\nx\n") == training + f"\n{HEADING}\n\nx\n"


@pytest.mark.parametrize("existing", [False, True])
def test_cli_writes_the_section(tmp_path, existing):
    results = tmp_path / "r.json"
    results.write_text(json.dumps(_report(80.0, 27.0)))
    doc = tmp_path / "performance.md"
    if existing:
        doc.write_text("## Training\n\nkeep me\n")
    subprocess.run([sys.executable, str(BENCH / "bilateral_report.py"), str(results), "--doc", str(doc)],
                   check=True, capture_output=True)
    text = doc.read_text()
    assert text.count(HEADING) == 1 and "Test CPU" in text
    assert ("keep me" in text) == existing


def test_a_gpu_run_keeps_its_own_section_and_compares_with_torch_on_the_gpu():
    gpu = _report(80.0, 27.0)
    gpu["threads"] = 16
    gpu["machine"]["gpu"] = "Test GPU, CUDA 13.0"
    wall = gpu["windows"][0]["wall"]
    wall["mvox_s"].update({"cupy": 800.0, "torch_cuda": 150.0})
    wall["ratios"]["cupy/torch_cuda"] = 800.0 / 150.0
    heading = "## Bilateral filter on a GPU"
    section = render(gpu, "g.json", heading)
    assert section.startswith(heading + "\n") and "--heading '## Bilateral filter on a GPU'" in section
    assert "GPU: Test GPU, CUDA 13.0." in section and "| cupy backend | 800.0 | - | - | 5.33x |" in section
    assert "Targets (issue 18" not in section  # the targets are for 2 threads
    cpu_doc = render(_report(80.0, 27.0), "r.json")
    both = replace_section(cpu_doc, section, heading)
    assert both.count(HEADING + "\n") == 1 and both.count(heading + "\n") == 1
    assert replace_section(both, f"{heading}\n\nnew\n", heading).endswith(f"{heading}\n\nnew\n")

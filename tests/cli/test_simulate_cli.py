"""``voxuda simulate`` writes the benchmark once, reuses it, and rejects unknown presets clearly."""

from __future__ import annotations

import csv

from voxuda.cli import main


def test_simulate_tiny_then_reuse(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["simulate", "--preset", "tiny", "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    domains = {r["domain"] for r in rows}
    assert "source" in domains and len(domains) == 4  # one source, three targets
    assert all((out / r["volume"]).is_file() for r in rows)
    stamp = (out / "manifest.csv").stat().st_mtime_ns
    assert main(["simulate", "--preset", "tiny", "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    assert (out / "manifest.csv").stat().st_mtime_ns == stamp  # cached, not regenerated
    assert "ready" in capsys.readouterr().out


def test_unknown_preset_is_one_line(tmp_path, capsys):
    assert main(["simulate", "--preset", "quik", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'quick'" in err
    assert not (tmp_path / "x").exists()

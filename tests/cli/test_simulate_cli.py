"""``voxuda simulate`` writes the benchmark once, reuses it, and rejects unknown presets clearly."""

from __future__ import annotations

import csv

from tests.cli.presets import SMALL_SHIFT_PRESET
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




def test_simulate_a_preset_file(tmp_path, capsys):
    preset = tmp_path / "my.toml"
    preset.write_text(SMALL_SHIFT_PRESET)
    out = tmp_path / "bench"
    argv = ["simulate", "--preset", str(preset), "--out", str(out), "--no-progress", "--workers", "1"]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert {(r["domain"], r["split"]) for r in rows} == {
        ("source", "train"), ("source", "val"), ("purified_thin_ice", "train"), ("purified_thin_ice", "test")
    }
    assert len(rows) == 6
    assert "benchmark 'small_shift'" in capsys.readouterr().out


def test_dump_preset_prints_a_file_that_reads_back(tmp_path, capsys):
    from voxuda.simulate.preset_file import load_preset_file
    from voxuda.simulate.presets import PRESETS

    assert main(["simulate", "--dump-preset", "appearance"]) == 0
    path = tmp_path / "appearance.toml"
    path.write_text(capsys.readouterr().out)
    assert load_preset_file(path) == PRESETS["appearance"]
    assert main(["simulate", "--list-presets"]) == 0
    listed = capsys.readouterr().out
    assert "appearance" in listed and "anatomy" in listed and "a8_classes" in listed


def test_bad_preset_file_is_one_line(tmp_path, capsys):
    preset = tmp_path / "bad.toml"
    preset.write_text('base = "tiny"\n[source]\nsnr_choices = [-1.0]\n')
    assert main(["simulate", "--preset", str(preset), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{preset}: source.snr_choices: must be > 0" in err
    assert not (tmp_path / "x").exists()
    assert main(["simulate", "--preset", "tiny"]) == 2
    assert "--out is required" in capsys.readouterr().err

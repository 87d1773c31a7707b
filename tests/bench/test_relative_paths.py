"""Generated reports name the folders they came from relative to the working directory, not the machine's."""

from __future__ import annotations

from pathlib import Path

from voxuda.bench.tables import provenance_lines, relative_paths


def test_absolute_paths_become_relative_to_the_base() -> None:
    text = "voxuda benchmark --out /tmp/run/results --data-root /tmp/run/data --suite quick"
    assert relative_paths(text, Path("/tmp/run")) == (
        "voxuda benchmark --out results --data-root data --suite quick")
    # a folder outside the base climbs up; a URL and relative paths stay as they are
    assert relative_paths("at /work/results/data, seed 0", Path("/work/main")) == "at ../results/data, seed 0"
    assert relative_paths("see https://example.org/a/b and docs/x.md", Path("/w")) == (
        "see https://example.org/a/b and docs/x.md")


def test_provenance_lines_rewrite_command_data_and_sessions(tmp_path: Path) -> None:
    out = tmp_path / "results"
    meta = {
        "command": f"voxuda benchmark --out {out}",
        "data": f"preset tiny (seed 0) at {tmp_path / 'data' / 'tiny'}, simulator version abc",
        "invocations": [{"date": "d", "command": f"voxuda benchmark --out {out} --only x",
                         "wall_seconds": 1.0, "cpu_seconds": 1.0, "data_seconds": 0.0, "trained": 1,
                         "reused": 0, "skipped": 0}],
    }
    text = "\n".join(provenance_lines(meta, base=tmp_path))
    assert str(tmp_path) not in text
    assert "`voxuda benchmark --out results`" in text
    assert "at data/tiny, simulator" in text
    assert "`voxuda benchmark --out results --only x`" in text

"""The benchmark writer: determinism, caching, crash safety, layout, polarity bookkeeping and labels."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from voxuda.data.datasets import load_split
from voxuda.data.errors import DataError
from voxuda.data.manifest import REQUIRED_COLUMNS, read_manifest
from voxuda.data.mrc import read_labels, read_volume
from voxuda.simulate import PRESETS, simulate_benchmark
from voxuda.simulate import writer as writer_mod


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_benchmark(
        "tiny", tmp_path_factory.mktemp("b") / "tiny", seed=7, progress=False, workers=2
    )


def test_layout_and_manifest(tiny: Path) -> None:
    meta = json.loads((tiny / "benchmark.json").read_text())
    assert meta["complete"] is True and meta["preset"] == "tiny" and meta["seed"] == 7
    assert meta["target_domains"] == ["insitu_ribosome", "purified_thin_ice", "dense_cell"]
    rows = read_manifest(tiny / "manifest.csv")
    header = next(csv.reader((tiny / "manifest.csv").open()))
    assert header[: len(REQUIRED_COLUMNS)] == list(REQUIRED_COLUMNS) and "snr_measured" in header
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r.domain, r.split)] = counts.get((r.domain, r.split), 0) + 1
    assert counts[("source", "train")] == 16 and counts[("source", "val")] == 8
    for d in meta["target_domains"]:
        assert counts[(d, "train")] == 16 and counts[(d, "test")] == 8
    assert {r.polarity for r in rows} == {"dark"}  # default benchmark: matched polarity
    src = [r for r in rows if r.domain == "source"]
    tgt = [r for r in rows if r.domain != "source"]
    assert {r.snr for r in src} == {0.05}
    assert min(r.snr for r in tgt) >= 0.005 and max(r.snr for r in tgt) <= 0.1
    for r in rows:  # measured SNR next to nominal; projection targets hit theirs within 20 %
        m = float(r.extra["snr_measured"])
        assert m > 0
        if r.domain != "source":
            assert m == pytest.approx(r.snr, rel=0.2)
    # classes: targets mostly differ from the source, with some overlap
    src_cls = {r.class_name for r in src}
    tgt_cls = {r.class_name for r in tgt}
    assert tgt_cls - src_cls and len(tgt_cls & src_cls) < len(tgt_cls)


def test_files_geometry_and_labels(tiny: Path) -> None:
    rows = read_manifest(tiny / "manifest.csv")
    for r in rows[::7]:
        vol, info = read_volume(r.volume)
        assert r.label is not None
        lab, linfo = read_labels(r.label)
        assert vol.shape == lab.shape == (32, 32, 32)
        assert info.voxel_size[0] == pytest.approx(r.voxel_size, rel=1e-6) and linfo == info
        assert set(np.unique(lab).tolist()) <= {0, 1}
        assert 0.005 < lab.mean() < 0.8


def test_recorded_polarity_is_physical(tiny: Path) -> None:
    """Protein really is dark where the manifest says dark (mean inside the mask below the mean outside)."""
    for domain in ("source", "insitu_ribosome", "purified_thin_ice"):
        vols, labels, meta = load_split(tiny, domain, None, canonical_polarity=None)
        assert labels is not None and all(m["polarity"] == "dark" for m in meta)
        fg = (vols[:, 0] * labels).sum() / labels.sum()
        bg = (vols[:, 0] * (1 - labels)).sum() / (1 - labels).sum()
        assert fg < bg
        inv, _, meta2 = load_split(tiny, domain, None, canonical_polarity="bright")
        assert all(m["polarity_inverted"] for m in meta2)
        torch.testing.assert_close(inv, -vols, atol=1e-4, rtol=1e-4)


def _mini() -> object:
    from dataclasses import replace

    small = PRESETS["tiny"]
    return replace(
        small,
        source=replace(small.source, splits=(("train", 2), ("val", 1))),
        targets=tuple(replace(t, splits=(("train", 1), ("test", 1))) for t in small.targets),
    )


def test_deterministic_and_seed_dependent(tiny: Path, tmp_path: Path) -> None:
    again = simulate_benchmark("tiny", tmp_path / "again", seed=7, progress=False, workers=1)
    assert _digest(again) == _digest(tiny)  # byte-identical, independent of worker count
    one = simulate_benchmark(_mini(), tmp_path / "one", seed=7, progress=False)  # type: ignore[arg-type]
    other = simulate_benchmark(_mini(), tmp_path / "other", seed=8, progress=False)  # type: ignore[arg-type]
    a, b = _digest(one), _digest(other)
    assert a.keys() == b.keys()
    vols = [k for k in a if k.endswith(".mrc")]
    assert sum(a[k] != b[k] for k in vols) == len(vols)


def test_cached_second_call_does_not_regenerate(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}
    calls = []
    monkeypatch.setattr(writer_mod, "_tasks", lambda *a: calls.append(a) or [])
    assert simulate_benchmark("tiny", tiny, seed=7, progress=False) == tiny
    assert not calls
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == before


def test_stale_or_incomplete_output_is_regenerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preset = _mini()
    out = tmp_path / "b"
    simulate_benchmark(preset, out, seed=1, progress=False)  # type: ignore[arg-type]
    good = _digest(out)
    meta = json.loads((out / "benchmark.json").read_text())
    meta["complete"] = False  # as if interrupted before the marker
    (out / "benchmark.json").write_text(json.dumps(meta))
    (out / "junk.txt").write_text("x")
    stale = tmp_path / ".b.partial-999999"
    stale.mkdir()
    simulate_benchmark(preset, out, seed=1, progress=False)  # type: ignore[arg-type]
    assert _digest(out) == good and not stale.exists()

    # an interruption mid-run leaves neither the output nor a partial folder behind
    def boom(*a: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer_mod, "_write_csv", boom)
    with pytest.raises(KeyboardInterrupt):
        simulate_benchmark(preset, tmp_path / "c", seed=1, progress=False)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="not a voxuda benchmark") as e:
        simulate_benchmark("tiny", tmp_path / "mine", seed=0, progress=False)
    assert "mine" in str(e.value)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_presets() -> None:
    for name in ("tiny", "quick", "paper"):
        assert PRESETS[name].source.polarity == "dark"
        mm = PRESETS[f"{name}_mismatched"]
        assert mm.source.polarity == "bright" and all(t.polarity == "dark" for t in mm.targets)
        assert [t.name for t in PRESETS[name].targets] == [
            "insitu_ribosome",
            "purified_thin_ice",
            "dense_cell",
        ]
    q = PRESETS["quick"]
    assert dict(q.source.splits) == {"train": 320, "val": 64}
    assert all(dict(t.splits) == {"train": 200, "test": 100} for t in q.targets)
    with pytest.raises(ValueError, match="unknown preset"):
        simulate_benchmark("nope", "/tmp/never", seed=0)


def test_mismatched_source_is_bright() -> None:
    vol, label, _, meta = writer_mod.simulate_sample(PRESETS["tiny_mismatched"].source, 32, seed=3)
    assert vol[label == 1].mean() > vol[label == 0].mean()
    vol_d, label_d, _, _ = writer_mod.simulate_sample(PRESETS["tiny"].source, 32, seed=3)
    assert vol_d[label_d == 1].mean() < vol_d[label_d == 0].mean()

"""A target domain in its own folder (e.g. `voxuda extract` output) next to a simulated source."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from tests.conftest import tiny_run_dict
from voxuda.data.errors import DataError
from voxuda.engine.data import load_run_data
from voxuda.engine.pipeline import train_and_evaluate
from voxuda.engine.run_config import run_config_from_dict
from voxuda.errors import ConfigError


def _split_dataset(tiny_dataset: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Copy the tiny dataset into a source-only folder and a target-only folder, each with its manifest."""
    with (tiny_dataset / "manifest.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    assert fields is not None
    out = {}
    for domain in ("source", "target"):
        folder = tmp_path / domain
        folder.mkdir()
        keep = [dict(r) for r in rows if r["domain"] == domain]
        for r in keep:
            for col in ("volume", "label"):
                if r.get(col):
                    shutil.copy(tiny_dataset / r[col], folder / Path(r[col]).name)
                    r[col] = Path(r[col]).name
        name = "picks_manifest.csv" if domain == "target" else "manifest.csv"
        with (folder / name).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(keep)
        out[domain] = folder
    return out["source"], out["target"]


def test_target_loads_from_its_own_folder(tiny_dataset: Path, tmp_path: Path) -> None:
    source, target = _split_dataset(tiny_dataset, tmp_path)
    data = tiny_run_dict(source)
    data["data"].update({"target_root": str(target), "target_manifest": "picks_manifest.csv"})
    cfg = run_config_from_dict(data)
    run_data = load_run_data(cfg.data, seed=0)
    reference = load_run_data(run_config_from_dict(tiny_run_dict(tiny_dataset)).data, seed=0)
    assert run_data.target_train.volumes.shape == reference.target_train.volumes.shape
    assert run_data.target_train.volumes.equal(reference.target_train.volumes)
    assert run_data.target_val is not None and run_data.target_val.volumes.equal(reference.target_val.volumes)
    assert run_data.source_train.volumes.equal(reference.source_train.volumes)
    result = train_and_evaluate(cfg, tmp_path / "run")  # evaluates on the target test split from target_root
    assert result.completed
    # without target_root the source folder has no target rows: a clear error, not an empty domain
    with pytest.raises(DataError, match="no rows for domain='target' split='train'"):
        load_run_data(run_config_from_dict(tiny_run_dict(source)).data, seed=0)


def test_missing_target_manifest_is_a_config_error(tiny_dataset: Path, tmp_path: Path) -> None:
    data = tiny_run_dict(tiny_dataset)
    data["data"]["target_root"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="data.target_root: .*nowhere has no manifest.csv"):
        load_run_data(run_config_from_dict(data).data, seed=0)


def test_unlabelled_real_target_trains_and_skips_the_final_evaluation(
        tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = _split_dataset(tiny_dataset, tmp_path)
    manifest = target / "picks_manifest.csv"
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    assert fields is not None
    for r in rows:  # what `voxuda extract` writes for real data: no label files
        r["label"] = ""
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    data = tiny_run_dict(source)
    data["data"].update({"target_root": str(target), "target_manifest": "picks_manifest.csv"})
    result = train_and_evaluate(run_config_from_dict(data), tmp_path / "run")
    assert result.completed and result.evaluation is None
    assert "the target domain has no labels; skipped the evaluation on 'test'" in capsys.readouterr().err
    assert (tmp_path / "run" / "best.pt").is_file() or (tmp_path / "run" / "last.pt").is_file()

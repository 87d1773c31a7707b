"""``voxuda train`` / ``voxuda evaluate`` from the command line, and one-line errors for bad configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxuda.cli import main
from voxuda.config import dump_toml


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(data), encoding="utf-8")
    return path


def test_train_then_evaluate(run_dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path, run_dict(steps=2))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--set", "trainer.steps=3", "--out", str(out)]) == 0
    assert "trained source_only for 3 steps" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--split", "val", "--checkpoint", "last"]) == 0
    printed = capsys.readouterr().out
    assert "overall: Dice" in printed and "ball" in printed
    result = json.loads((out / "eval_val_last.json").read_text())
    assert result["checkpoint"]["step"] == 3


BAD = [
    ({"method": {"name": "sauce_only"}}, "unknown method 'sauce_only'"),
    ({"trainer": {"steps": "many"}}, "config.trainer.steps: expected an integer"),
    ({"trainer": {"stepz": 3}}, "did you mean 'steps'"),
    ({"data": {"root": ""}}, "data.root: missing data path"),
    ({"method": {"name": "dann", "discriminator_mode": "global"}}, "discriminator_mode"),
    ({"method": {"name": "source_only", "backbone": "unet4d"}}, "unknown backbone 'unet4d'"),
]


@pytest.mark.parametrize(("patch", "message"), BAD)
def test_bad_config_is_one_line(run_dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], patch: dict,  # type: ignore[no-untyped-def]
                                message: str) -> None:
    data = run_dict()
    for section, values in patch.items():
        data[section] = {**data[section], **values} if section != "method" else values
    config = write_config(tmp_path, data)
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_data_folder_and_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import tiny_run_dict

    config = write_config(tmp_path, tiny_run_dict(tmp_path / "nowhere"))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err

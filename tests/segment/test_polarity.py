"""Input polarity at inference: ``--polarity`` mapped to the run's training polarity as training did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from tests.segment.synthetic import dice, write_mrc
from voxuda.cli import main
from voxuda.config import dump_toml, load_toml
from voxuda.data.transforms import polarity_factor
from voxuda.segment.polarity import canonical_of_run, resolve_input_polarity


@pytest.mark.parametrize(("polarity", "canonical", "inverted"), [
    (None, "bright", True),  # the default input is dark, the physical convention
    ("dark", "bright", True),
    ("bright", "bright", False),
    ("unknown", "bright", False),  # unknown polarity is never inverted, as in training
    ("dark", "dark", False),
    ("bright", "dark", True),
    ("dark", "keep", False),  # canonical_polarity = "keep": training inverted nothing
    ("dark", None, False),  # a run that records no polarity
])
def test_mapping_is_the_training_mapping(polarity: str | None, canonical: str | None, inverted: bool) -> None:
    mapped = resolve_input_polarity(polarity, canonical)
    assert mapped.invert is inverted
    assert (mapped.note is not None) is inverted
    known = {None: "dark", "unknown": ""}.get(polarity, polarity)
    training = None if canonical in (None, "keep") else canonical
    assert (polarity_factor(known, training) == -1.0) is inverted


def test_invert_is_a_manual_override_and_excludes_polarity() -> None:
    assert resolve_input_polarity(None, "dark", invert=True).invert
    assert resolve_input_polarity(None, None, invert=True).note == "inverting the input contrast (--invert)"
    with pytest.raises(ValueError, match="--invert and --polarity"):
        resolve_input_polarity("dark", "bright", invert=True)
    with pytest.raises(ValueError, match="--polarity 'grey'"):
        resolve_input_polarity("grey", "bright")


def test_run_json_is_read_before_config_toml() -> None:
    config = {"data": {"canonical_polarity": "dark"}}
    assert canonical_of_run({"polarity": {"canonical": "bright"}}, config) == "bright"
    assert canonical_of_run({}, config) == "dark"
    assert canonical_of_run({}, {"data": {}}) is None


def _bright_run(trained_run: Path, folder: Path) -> Path:
    """The bright-sphere model as a run trained with canonical_polarity = "bright" (recorded in run.json)."""
    shutil.copytree(trained_run, folder)
    config = load_toml(folder / "config.toml")
    config["data"]["canonical_polarity"] = "bright"
    (folder / "config.toml").write_text(dump_toml(config), encoding="utf-8")
    record = {"polarity": {"canonical": "bright", "source": ["dark"], "target": ["dark"]}}
    (folder / "run.json").write_text(json.dumps(record), encoding="utf-8")
    return folder


def _segment(capsys: pytest.CaptureFixture[str], run: Path, tomo: Path, out: Path, *extra: str
             ) -> tuple[int, str]:
    code = main(["segment", str(run), str(tomo), "--out", str(out), "--no-progress", "--device", "cpu",
                 *extra])
    return code, capsys.readouterr().err


def test_dark_tomogram_is_inverted_for_a_bright_trained_run(planted, trained_run: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bright_tomo, truth = planted
    with mrcfile.open(bright_tomo) as mrc:
        dark = -np.array(mrc.data)
    dark_tomo = write_mrc(tmp_path / "dark.mrc", dark)
    run = _bright_run(trained_run, tmp_path / "run")

    code, err = _segment(capsys, run, dark_tomo, tmp_path / "default.mrc")  # default: --polarity dark
    assert code == 0 and err.count("inverting the input contrast") == 1, err
    with mrcfile.open(tmp_path / "default.mrc") as mrc:
        assert dice(mrc.data, truth) > 0.8

    code, err = _segment(capsys, run, bright_tomo, tmp_path / "bright.mrc", "--polarity", "bright")
    assert code == 0 and "inverting" not in err, err
    with mrcfile.open(tmp_path / "bright.mrc") as mrc:
        assert dice(mrc.data, truth) > 0.8

    code, err = _segment(capsys, run, dark_tomo, tmp_path / "wrong.mrc", "--polarity", "bright")
    assert code == 0  # a wrong declaration is honoured, and the result shows it
    with mrcfile.open(tmp_path / "wrong.mrc") as mrc:
        assert dice(mrc.data, truth) < 0.3

    code, err = _segment(capsys, run, bright_tomo, tmp_path / "manual.mrc", "--invert")
    assert code == 0 and "(--invert)" in err
    with mrcfile.open(tmp_path / "manual.mrc") as mrc:
        assert dice(mrc.data, truth) < 0.3


def test_invert_with_polarity_is_one_line_and_writes_nothing(planted, trained_run: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    tomo, _ = planted
    out = tmp_path / "labels.mrc"
    code, err = _segment(capsys, trained_run, tomo, out, "--invert", "--polarity", "dark")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "--invert and --polarity" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_old_output_spelling_still_works(planted, trained_run: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    tomo, _ = planted
    assert main(["segment", str(trained_run), str(tomo), "--output", str(tmp_path / "a.mrc"),
                 "--quiet", "--device", "cpu", "--polarity", "unknown"]) == 0
    assert (tmp_path / "a.mrc").is_file()
    assert "--output" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    helptext = capsys.readouterr().out
    assert "--out" in helptext and "--output" not in helptext and "--quiet" not in helptext


def test_evaluate_polarity_replaces_the_manifest_polarity(run_dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The tiny dataset's rows are bright and the run canonicalises to bright: nothing is inverted by
    default; ``--polarity dark`` declares every row dark, so each is inverted once, before normalisation."""
    config = run_dict(steps=2)
    config["evaluation"]["split"] = ""
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(config), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    argv = ["evaluate", str(run), "--split", "val", "--checkpoint", "last", "--device", "cpu"]
    assert main(argv) == 0
    assert "inverted the contrast" not in capsys.readouterr().err
    plain = json.loads((run / "eval_val_last.json").read_text())
    assert plain["polarity"] == {"input": "manifest", "canonical": "bright", "inverted": 0, "volumes": 4}
    assert main([*argv, "--polarity", "dark"]) == 0
    assert capsys.readouterr().err.count("inverted the contrast of 4 of 4 volumes") == 1
    dark = json.loads((run / "eval_val_last_polarity-dark.json").read_text())
    assert dark["polarity"]["inverted"] == 4 and dark["polarity"]["input"] == "dark"

    from voxuda.engine.data import ensure_dataset, load_target
    from voxuda.engine.run_config import run_config_from_dict

    cfg = run_config_from_dict(load_toml(run / "config.toml"), check_components=False).data
    root = ensure_dataset(cfg)
    as_manifest = load_target(cfg, root, "val")
    as_dark = load_target(cfg, root, "val", polarity="dark")
    torch.testing.assert_close(as_dark.volumes, -as_manifest.volumes)  # z-score: inverted before = negated

"""``voxuda segment`` and ``voxuda evaluate`` on a finished run of every registered method, plugins included.

Each method trains for a few steps on the tiny blob dataset through ``voxuda train``; its run folder then
segments a one-window tomogram through ``voxuda segment``. With ``--patch`` equal to the tomogram and no
overlap, the written probabilities are exactly the softmax of one forward pass, so they can be compared with
the networks of the method rebuilt from the checkpoint: they must equal the reported network's (a mean
teacher's or Vox-UDA's teacher, AdaBN's student with target statistics) and differ from every other one.
"""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from tests.conftest import SIZE, make_blobs, tiny_run_dict
from voxuda.api import build_method, list_components
from voxuda.cli import main
from voxuda.config import dump_toml, load_toml

METHODS = sorted({spec.name for spec in list_components("method")})
#: the shipped plugins, installed editable by CI: the parametrisation must include their methods
PLUGIN_METHODS = {"adabn", "advent", "coral", "entropy_min", "fixmatch"}
TOLERANCE = 1e-4
#: options a method needs on the tiny two-level U-Net (vox_uda weights one tap per level: 3 taps here)
TINY_OPTIONS: dict[str, dict[str, object]] = {"vox_uda": {"tap_weights": [0.3, 0.3, 0.4]}}


def test_the_registry_includes_the_plugin_methods() -> None:
    """Guards the parametrisation below: without the plugins installed it would silently shrink."""
    assert set(METHODS) >= PLUGIN_METHODS, sorted(PLUGIN_METHODS - set(METHODS))
    assert {"source_only", "dann", "mean_teacher", "vox_uda", "oracle"} <= set(METHODS)


@pytest.fixture(scope="module")
def dark_tomogram(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """One 16^3 blob with protein *dark* (the physical convention), 10 Å voxels like the tiny dataset."""
    volumes, _, _ = make_blobs(1, seed=7)
    dark = -volumes[0, 0].numpy()
    path = tmp_path_factory.mktemp("tomo") / "dark.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(dark.astype(np.float32))
        mrc.voxel_size = 10.0
    return path, dark


def _probabilities(network: torch.nn.Module, volume: np.ndarray) -> np.ndarray:
    """Foreground softmax of one forward pass on the training preprocessing of ``volume`` (dark input, run
    trained on canonical bright: inverted, then z-scored)."""
    from voxuda.data.transforms import normalize

    x = normalize(-torch.from_numpy(volume), "zscore")[None, None]
    with torch.no_grad():
        out = network(x)
    logits = out[0] if isinstance(out, tuple) else out
    return logits.float().softmax(dim=1)[0, 1].numpy()


def _rebuilt(run: Path) -> torch.nn.Module:
    """The method of ``run`` from its config.toml and the checkpoint segment picks (best, else last)."""
    from voxuda.engine.checkpoint import load_checkpoint

    method = build_method(load_toml(run / "config.toml")["method"])
    checkpoint = run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"
    method.load_state_dict(load_checkpoint(checkpoint)["method"])
    return method.eval()


@pytest.mark.parametrize("name", METHODS)
def test_segment_and_evaluate_use_the_reported_network(name: str, tiny_dataset: Path, dark_tomogram,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    tomo, volume = dark_tomogram
    config = tiny_run_dict(tiny_dataset, {"name": name, **TINY_OPTIONS.get(name, {})}, steps=3, lr=3e-2)
    config["evaluation"]["split"] = ""  # evaluated below through the command
    config_path = tmp_path / "run.toml"
    config_path.write_text(dump_toml(config), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--config", str(config_path), "--out", str(run), "--no-progress"]) == 0
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["polarity"] == {"canonical": "bright", "source": ["bright"], "target": ["bright"]}
    capsys.readouterr()

    labels, prob = tmp_path / "labels.mrc", tmp_path / "prob.mrc"
    argv = ["segment", str(run), str(tomo), "--out", str(labels), "--probabilities", str(prob),
            "--patch", str(SIZE), "--overlap", "0", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr()
    err = printed.err
    assert err.count("inverting the input contrast") == 1, err  # dark input, bright training: said once
    with mrcfile.open(prob) as mrc:
        written = np.array(mrc.data)
    with mrcfile.open(labels) as mrc:
        np.testing.assert_array_equal(mrc.data, (written > 0.5).astype(np.int8))

    method = _rebuilt(run)
    reported = method.reported_network
    networks = method.networks()
    assert reported in networks, (reported, sorted(networks))
    assert reported == record["reported_network"] and f"with the {reported} network of" in printed.out
    expected = _probabilities(method.predictor(), volume)
    np.testing.assert_allclose(written, expected, atol=TOLERANCE)
    if type(method).predictor is type(build_method("source_only")).predictor:  # not overridden (AdaBN is)
        np.testing.assert_allclose(written, _probabilities(networks[reported], volume), atol=TOLERANCE)
    for other, network in networks.items():
        if other != reported:  # e.g. the student of a teacher-reporting method: must not be what segment used
            assert np.abs(_probabilities(network, volume) - written).max() > 10 * TOLERANCE, other

    assert main(["evaluate", str(run), "--split", "val", "--checkpoint", "last"]) == 0
    printed = capsys.readouterr().out
    assert "overall: Dice" in printed
    assert json.loads((run / "eval_val_last.json").read_text())["method"] == name


def test_a_config_reporting_another_network_than_run_json_is_refused(tiny_dataset: Path, dark_tomogram,
                                                                     tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]
                                                                     ) -> None:
    """run.json says which network the run reported; a config.toml edited to predict with the other one
    would segment with a network no result was reported for."""
    tomo, _ = dark_tomogram
    config = tiny_run_dict(tiny_dataset, "mean_teacher", steps=1)
    config["evaluation"]["split"] = ""
    (tmp_path / "run.toml").write_text(dump_toml(config), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "run.toml"), "--out", str(run), "--no-progress"]) == 0
    edited = load_toml(run / "config.toml")
    edited["method"]["predict_with"] = "student"
    (run / "config.toml").write_text(dump_toml(edited), encoding="utf-8")
    capsys.readouterr()
    out = tmp_path / "labels.mrc"
    assert main(["segment", str(run), str(tomo), "--out", str(out), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "records predictions by the 'teacher' network" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()

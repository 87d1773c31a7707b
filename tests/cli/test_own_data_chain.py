"""The docs/own_data.md chain, run through the CLI on a simulated 13.48 Å IMOD byte-scaled tomogram that
stands for a user's: simulate a source, train, bootstrap-segment, pick, extract with the right box, adapt
(``--init-from``), segment with the right polarity, and score against the tomogram's label map.

``test_own_data_chain_slow`` is the tutorial's chain with its own sizes (subprocesses, ``sys.executable -m
voxuda``); docs/own_data.md records the Dice it measured. ``test_own_data_chain_small`` runs the same steps on
a tiny tomogram with a few training steps, in process, so CI sees every link of the chain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from voxuda.data.mrc import read_header, read_labels

ROOT = Path(__file__).resolve().parents[2]

#: The source preset file of the tutorial: the quick crowded source (ribosome-/TRiC-sized classes,
#: neighbours at the box faces), fewer volumes, and one small target the source-only run evaluates on.
SOURCE_PRESET = """\
base = "quick_crowded_source"
name = "my_source"

[source]
splits = {{ train = {train}, val = {val} }}

[[targets]]
name = "insitu_ribosome"
from = "insitu_ribosome"
splits = {{ train = 4, test = 4 }}
"""


@dataclass(frozen=True)
class Sizes:
    """What differs between the tutorial's chain and its CI-sized copy."""

    shape: tuple[int, int, int]
    particles: int
    source_train: int
    source_val: int
    source_steps: int
    adapt_steps: int
    widths: str
    batch: int
    target_boxes: int


TUTORIAL = Sizes((48, 112, 112), 40, 160, 16, 150, 20, "[8,16,32]", 4, 128)
SMALL = Sizes((32, 48, 48), 6, 8, 2, 2, 2, "[4,8,16]", 2, 6)


def chain(s: Sizes) -> list[list[str]]:
    """The tutorial's commands (arguments after ``voxuda``), run from a folder holding my_source.toml."""
    net = ["--set", f"method.backbone.widths={s.widths}", "--set", f"trainer.batch_size={s.batch}"]
    data = ["--set", "data.root=data/my_source", "--set", "data.preset=my_source.toml"]
    tomo, labels = "data/my_tomogram/tomogram.mrc", "data/my_tomogram/labels.mrc"
    z, y, x = (str(v) for v in s.shape)
    return [
        ["simulate", "--tomogram", "insitu_ribosome", "--voxel-size", "13.48", "--polarity", "dark",
         "--imod-bytes", "--shape", z, y, x, "--particles", str(s.particles), "--out", "data/my_tomogram"],
        ["simulate", "--preset", "my_source.toml", "--out", "data/my_source"],
        ["train", "--config", "configs/source_only.toml", *data, "--set", f"trainer.steps={s.source_steps}",
         *net, "--out", "runs/source"],
        ["segment", "runs/source", tomo, "-o", "seg_source.mrc", "--polarity", "dark", "--scope", "tomogram",
         "--model-voxel-size", "10"],
        ["evaluate-tomogram", "seg_source.mrc", labels],
        ["pick", "seg_source.mrc", "-o", "picks_source.star", "--tomogram", tomo, "--min-voxels", "100"],
        ["extract", tomo, "--random", str(s.target_boxes), "--seed", "0", "--box", "24",
         "--match-box-of", "data/my_source", "--polarity", "dark", "--out", "data/my_target"],
        ["train", "--config", "configs/vox_uda.toml", "--init-from", "runs/source", *data,
         "--set", "data.target_root=data/my_target", "--set", "data.target_domain=target",
         "--set", "evaluation.split=", "--set", f"trainer.steps={s.adapt_steps}",
         "--set", "method.ema_half_life_fraction=0.2", *net, "--out", "runs/adapted"],
        ["segment", "runs/adapted", tomo, "-o", "seg_adapted.mrc", "--polarity", "dark",
         "--scope", "tomogram"],
        ["pick", "seg_adapted.mrc", "-o", "picks.star", "--tomogram", tomo, "--min-voxels", "100"],
        ["evaluate-tomogram", "seg_adapted.mrc", labels, "--picks", "picks.star",
         "--truth", "data/my_tomogram/particles.star", "--distance", "100", "--json"],
    ]


def _prepare(work: Path, s: Sizes) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "my_source.toml").write_text(SOURCE_PRESET.format(train=s.source_train, val=s.source_val))
    (work / "configs").symlink_to(ROOT / "configs")


def _trivial_baselines(seg: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Dice of segmentations that know nothing of the image: everything foreground, and the expected Dice
    of a random segmentation with as many foreground voxels as ``seg`` (``2 p q / (p + q)``)."""
    p, q = float((labels > 0).mean()), float((seg > 0).mean())
    return {"all_foreground": 2 * p / (1 + p), "random_same_rate": 2 * p * q / (p + q) if p + q else 0.0}


def _check_outputs(work: Path) -> tuple[dict, dict[str, float]]:
    shape, info, mode = read_header(work / "data/my_tomogram/tomogram.mrc")
    assert mode == 0 and info.voxel_size == pytest.approx((13.48,) * 3, rel=1e-6)
    seg, seg_info = read_labels(work / "seg_adapted.mrc")
    labels, _ = read_labels(work / "data/my_tomogram/labels.mrc")
    assert seg.shape == labels.shape == shape and seg_info.voxel_size == info.voxel_size
    run = json.loads((work / "runs/adapted/run.json").read_text())
    assert run["init_from"]  # adapted from the source run, not from scratch
    return run, _trivial_baselines(seg, labels)


@pytest.mark.slow
def test_own_data_chain_slow(tmp_path: Path) -> None:
    work = tmp_path / "own"
    _prepare(work, TUTORIAL)
    # The checkout under test, not whichever voxuda the interpreter has installed, runs in the work folder.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    started = time.perf_counter()
    out = ""
    for argv in chain(TUTORIAL):
        proc = subprocess.run([sys.executable, "-m", "voxuda", *argv], cwd=work, env=env, capture_output=True,
                              text=True, timeout=3600)
        assert proc.returncode == 0, f"voxuda {' '.join(argv)}\n{proc.stderr[-2000:]}"
        out = proc.stdout
        notes = [line for line in proc.stderr.splitlines() if line.startswith("voxuda:")]
        print(f"\n$ voxuda {' '.join(argv)}\n" + "\n".join([*notes, out.strip()][-12:]))
    result = json.loads(out)
    _run, base = _check_outputs(work)
    bound = 1.5 * max(base.values())
    print(f"\nown-data chain: Dice {result['dice_foreground']:.4f} (bound {bound:.4f}; baselines {base}); "
          f"picks {result['picks']}; {time.perf_counter() - started:.0f} s")
    # Clearly above what a segmentation that ignores the image reaches: 1.5x the better trivial baseline.
    assert result["dice_foreground"] > bound


def test_own_data_chain_small(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from voxuda.cli import main

    work = tmp_path / "own"
    _prepare(work, SMALL)
    monkeypatch.chdir(work)
    steps = chain(SMALL)
    for argv in steps[:-1]:
        assert main([*argv, "--no-progress"] if argv[0] in ("simulate", "train", "segment", "extract")
                    else argv) == 0, argv
    capsys.readouterr()
    assert main(steps[-1]) == 0
    result = json.loads(capsys.readouterr().out)
    _run, base = _check_outputs(work)
    assert 0.0 <= result["dice_foreground"] <= 1.0 and base["all_foreground"] > 0
    assert result["picks"]["true"] >= 2 and result["picks"]["distance_angstrom"] == 100.0


def test_tutorial_page_shows_the_tested_chain() -> None:
    """docs/own_data.md shows exactly the commands the slow test runs (its Dice is recorded there)."""
    import re
    import shlex

    text = (ROOT / "docs" / "own_data.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    shown = [shlex.split(line)[1:] for block in blocks for line in block.splitlines()
             if line.startswith("voxuda ")]
    tested = [[a for a in argv if a != "--json"] for argv in chain(TUTORIAL)]
    assert shown == tested
    assert SOURCE_PRESET.format(train=TUTORIAL.source_train, val=TUTORIAL.source_val) in text

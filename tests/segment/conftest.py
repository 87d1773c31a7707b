"""Fixtures of the segment tests: a planted-particle tomogram on disk and a tiny trained run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.segment.synthetic import planted_tomogram, write_mrc
from voxuda.config import dump_toml

TOMO_SHAPE = (64, 96, 80)
VOXEL = (10.0, 10.0, 10.0)
ORIGIN = (30.0, -20.0, 10.0)
TINY_BACKBONE = {"name": "unet3d", "widths": [8, 16]}


@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 64 x 96 x 80 tomogram of bright spheres in noise (10 Å voxels, non-zero origin) and its labels."""
    folder = tmp_path_factory.mktemp("planted")
    volume, labels = planted_tomogram(TOMO_SHAPE, seed=0)
    return write_mrc(folder / "tomo.mrc", volume, VOXEL, ORIGIN), labels


def write_run(folder: Path, method: object, config: dict, step: int = 1) -> Path:
    """A run folder as ``voxuda train`` writes it: config.toml plus a voxuda-format last.pt."""
    from voxuda.engine.checkpoint import FORMAT, VERSION, save_atomic

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(dump_toml(config), encoding="utf-8")
    state = method.state_dict()  # type: ignore[attr-defined]
    payload = {"format": FORMAT, "version": VERSION, "step": step, "method": state}
    save_atomic(payload, folder / "last.pt")
    return folder


def _crops(volume: np.ndarray, labels: np.ndarray, n: int, box: int, rng: np.random.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    vols, labs = [], []
    for _ in range(n):
        z, y, x = (int(rng.integers(0, s - box + 1)) for s in volume.shape)
        v = volume[z:z + box, y:y + box, x:x + box]
        vols.append((v - v.mean()) / (v.std() + 1e-6))  # per-volume z-score, as the datasets do
        labs.append(labels[z:z + box, y:y + box, x:x + box])
    return torch.from_numpy(np.stack(vols))[:, None].float(), torch.from_numpy(np.stack(labs)).long()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """source_only on a 2-level U-Net (8, 16), 40 Adam steps on 16^3 crops of another planted tomogram."""
    from voxuda.api import build_method
    from voxuda.methods.base import SourceBatch, TargetBatch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # session fixtures start before the per-test thread fixture
    torch.manual_seed(0)
    config = {
        "method": {"name": "source_only", "backbone": TINY_BACKBONE},
        "data": {"normalization": "zscore", "box": 16, "num_classes": 2},
    }
    method = build_method(config["method"])
    volume, labels = planted_tomogram((48, 48, 48), seed=1)
    rng = np.random.default_rng(0)
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    for _ in range(40):
        x, y = _crops(volume, labels, 4, 16, rng)
        out = method.training_step(SourceBatch(x, y), TargetBatch(x), 0)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    return write_run(tmp_path_factory.mktemp("run") / "run", method, config, step=40)


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """One thread: on a shared 2-core machine, two spinning OpenMP threads per process are ~20x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

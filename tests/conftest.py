"""Shared fixtures: tiny synthetic 3D blob volumes (16^3) with labels, in memory and as an MRC dataset.

Built here, without the simulator, so that method and engine tests run in seconds and do not depend on the
data engineer's presets. Source blobs are bright on a noisy background; target blobs are dimmer and noisier
(a small domain shift). Classes: "ball" (sphere) and "rod" (elongated ellipsoid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

SIZE = 16
CLASSES = ("ball", "rod")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """One intra-op thread: the machine's two cores are shared, and OpenMP spinning under contention is
    far slower than single-threaded work on 16^3 volumes."""
    torch.set_num_threads(1)


def make_blobs(
    n: int, *, seed: int, size: int = SIZE, contrast: float = 1.0, noise: float = 0.4
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n`` volumes ``(n, 1, s, s, s)`` (z-scored), labels ``(n, s, s, s)`` and class names."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(size),) * 3, indexing="ij")).astype(np.float32)
    volumes, labels, names = [], [], []
    for i in range(n):
        name = CLASSES[i % len(CLASSES)]
        centre = rng.uniform(size * 0.35, size * 0.65, size=3)
        radii = np.array([3.5, 3.5, 3.5]) if name == "ball" else np.array([2.5, 2.5, 5.5])
        radii = radii * rng.uniform(0.8, 1.2)
        dist = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0)
        mask = dist <= 1.0
        vol = contrast * mask.astype(np.float32) + noise * rng.standard_normal((size,) * 3).astype(np.float32)
        vol = (vol - vol.mean()) / (vol.std() + 1e-6)
        volumes.append(vol[None])
        labels.append(mask.astype(np.int64))
        names.append(name)
    return torch.from_numpy(np.stack(volumes)), torch.from_numpy(np.stack(labels)), names


def blob_split(n: int, *, seed: int, **kwargs: Any):  # type: ignore[no-untyped-def]
    """A :class:`voxuda.engine.data.DomainSplit` of blobs."""
    from voxuda.engine.data import DomainSplit

    volumes, labels, names = make_blobs(n, seed=seed, **kwargs)
    return DomainSplit(volumes, labels, [{"id": f"{seed}-{i}", "class": c} for i, c in enumerate(names)])


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MRC + manifest dataset: source/target x train(8)/val(4)/test(4), 16^3 blobs."""
    from voxuda.data.manifest import ManifestRow, write_manifest
    from voxuda.data.mrc import VolumeInfo, write_labels, write_volume

    root = tmp_path_factory.mktemp("tiny_dataset")
    info = VolumeInfo.isotropic(10.0)
    rows = []
    plan = {"source": (1.0, 0.4), "target": (0.7, 0.6)}
    for d_index, (domain, (contrast, noise)) in enumerate(plan.items()):
        for s_index, (split, n) in enumerate((("train", 8), ("val", 4), ("test", 4))):
            seed = 100 * d_index + 10 * s_index
            volumes, labels, names = make_blobs(n, seed=seed, contrast=contrast, noise=noise)
            for i in range(n):
                ident = f"{domain}_{split}_{i}"
                vol_path = write_volume(root / f"{ident}.mrc", volumes[i, 0].numpy(), info)
                lab_path = write_labels(root / f"{ident}_label.mrc", labels[i].numpy().astype(np.int8), info)
                rows.append(ManifestRow(
                    id=ident, split=split, domain=domain, class_name=names[i], voxel_size=10.0,
                    polarity="bright", snr=float("nan"), defocus=float("nan"), seed=str(seed),
                    volume=vol_path, label=lab_path,
                ))
    write_manifest(rows, root / "manifest.csv")
    return root


def tiny_run_dict(
    root: Path | str, method: str | dict[str, Any] = "source_only", **trainer: Any
) -> dict[str, Any]:
    """A run config (as TOML data) small enough for a few CPU seconds."""
    method_table = {"name": method} if isinstance(method, str) else dict(method)
    method_table.setdefault("backbone", {"name": "unet3d", "widths": [4, 8]})
    return {
        "seed": 0,
        "method": method_table,
        "data": {"root": str(root), "box": SIZE},
        "trainer": {"steps": 4, "batch_size": 2, "lr": 3e-3, "progress": False, "num_threads": 1, **trainer},
        "evaluation": {"batch_size": 4},
    }


@pytest.fixture
def run_dict(tiny_dataset: Path):  # type: ignore[no-untyped-def]
    def make(method: str | dict[str, Any] = "source_only", **trainer: Any) -> dict[str, Any]:
        return tiny_run_dict(tiny_dataset, method, **trainer)

    return make

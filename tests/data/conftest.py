from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxuda.data.manifest import REQUIRED_COLUMNS
from voxuda.data.mrc import VolumeInfo, write_labels, write_volume


def write_set(
    root: Path, n: int = 3, *, polarity: str = "dark", shape: tuple[int, int, int] = (16, 16, 16)
) -> Path:
    """A small hand-made dataset: random volumes, labels 0/1, a CSV manifest."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    lines = [",".join(REQUIRED_COLUMNS)]
    for i in range(n):
        vol = rng.normal(size=shape).astype(np.float32) + 3.0
        lab = (vol > 3.5).astype(np.int8)
        write_volume(root / f"v{i}.mrc", vol, VolumeInfo.isotropic(12.0))
        write_labels(root / f"v{i}_label.mrc", lab, VolumeInfo.isotropic(12.0))
        lines.append(f"v{i},train,dom,cls{i % 2},12.0,{polarity},0.05,4.0,{i},v{i}.mrc,v{i}_label.mrc")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def small_set(tmp_path: Path) -> Path:
    return write_set(tmp_path / "set")

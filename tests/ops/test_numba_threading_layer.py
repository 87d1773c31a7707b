"""The numba bilateral kernels run on numba's workqueue threads, not a second OpenMP runtime beside torch's
(on ``omp``, torch's 1-thread steps ran 5-7x slower after one numba call: docs/performance.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

CODE = """
import numba, torch
from voxuda.ops.bilateral import bilateral3d
x = torch.rand(1, 1, 12, 12, 12)
bilateral3d(x, sigma_spatial=1.0, sigma_range=0.3, radius=1, backend="numba")
print(numba.threading_layer())
"""


def _layer(env: dict[str, str]) -> str:
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", CODE], cwd=repo, env={**env, "PYTHONPATH": str(repo)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-800:]
    return out.stdout.strip().splitlines()[-1]


def test_bilateral_runs_on_workqueue_unless_the_user_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    assert _layer(env) == "workqueue"
    assert _layer({**env, "NUMBA_THREADING_LAYER": "omp"}) == "omp"  # the user's choice is kept

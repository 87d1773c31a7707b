"""Helpers of the run-level tests: run configs on disk, subprocess launches, raw metrics.jsonl checks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def write_config(folder: Path, root: Path, method: str, **trainer: Any) -> Path:
    from tests.conftest import tiny_run_dict
    from voxuda.config import dump_toml

    data = tiny_run_dict(root, method, **trainer)
    data["evaluation"]["split"] = ""  # no end-of-run evaluation: these tests are about the training loop
    path = folder / "run.toml"
    path.write_text(dump_toml(data), encoding="utf-8")
    return path


def subprocess_env() -> dict[str, str]:
    """The current environment with this checkout first on the path and one thread per process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.update({"OMP_NUM_THREADS": "1", "VOXUDA_DISABLE_PLUGIN_AUTOLOAD": "1", "GLOO_SOCKET_IFNAME": "lo"})
    return env


def train_command(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "voxuda", "train", "--config", str(config), "--out", str(out), *extra]


def metric_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of metrics.jsonl, parsed (a torn or corrupt line fails the test)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def step_records(path: Path) -> list[int]:
    return [r["step"] for r in metric_lines(path) if "event" not in r]

"""The analysis scripts in scripts/ report a user's error (a malformed config.toml, a folder that is not a
finished suite) as one line naming the file, with the voxuda command's exit status, not a traceback
(voxuda.cli.script_main)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize(("script", "named"), [("foreground_calibration.py", "config.toml"),
                                               ("select_start_regret.py", "results.json")])
def test_a_bad_input_folder_is_one_line(script: str, named: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("seed = [\n")
    (run / "metrics.jsonl").write_text("")
    args = [str(run)] if script == "foreground_calibration.py" else ["--from", str(run)]
    done = subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(script.removesuffix(".py") + ": ") and named in done.stderr

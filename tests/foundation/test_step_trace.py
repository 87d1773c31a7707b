"""scripts/step_trace.py: the files one training step enters (docs/architecture.md quotes its numbers)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from step_trace import trace_step  # noqa: E402


def test_a_vox_uda_step_stays_out_of_the_registry_and_passes_its_terms() -> None:
    """The op backend is resolved when the denoiser is built, so a step never scans the registry or loads
    plugins; the step runs through the method's terms, the teacher's filter and its op kernel."""
    result = trace_step("vox_uda")
    files = result["files"]
    assert "voxuda/registry.py" not in files and "voxuda/plugins.py" not in files
    for expected in ("voxuda/engine/trainer.py", "voxuda/methods/vox_uda.py", "voxuda/methods/terms.py",
                     "voxuda/denoisers/bilateral.py", "voxuda/ops/backends/torch_backend.py",
                     "voxuda/methods/ema.py"):
        assert expected in files
    assert files[0] == "voxuda/engine/trainer.py"
    assert result["n_files"] == len(files) and result["moves"] >= len(files) - 1

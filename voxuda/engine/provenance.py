"""What a run records about itself in ``run.json``: versions, components, seeds, selection and times."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

from voxuda import atomic
from voxuda.config import ComponentRef


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    import numpy
    import torch

    from voxuda import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "voxuda": __version__,
    }


# Environment variables that change which kernels torch, oneDNN and MKL pick, and so the float results.
_NUMERICS_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_CBWR",
                 "MKL_ENABLE_INSTRUCTIONS", "CUBLAS_WORKSPACE_CONFIG")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere), "unknown" if neither
    says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def numerics(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """What decides a run's floating-point results besides its config, data and seed.

    Why: with the same code, data, seed and settings two runs are bit-identical only when these agree too.
    Measured (docs/training.md, "Reproducibility"): on one machine two runs gave the same bits, while
    limiting oneDNN to AVX2 instead of AVX-512 (``ONEDNN_MAX_CPU_ISA``), or 1 thread instead of 2, changed
    the weights after 40-60 steps; training amplifies such differences into different final models. A run
    records this so that a number retrained on another machine is not mistaken for a changed method."""
    import torch

    record: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "torch": torch.__version__,
        "env": {key: os.environ[key] for key in _NUMERICS_ENV if key in os.environ},
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index
        record["gpu"] = torch.cuda.get_device_name(torch.cuda.current_device() if index is None else index)
        record["cudnn"] = torch.backends.cudnn.version()
    return record


def numerics_label(record: dict[str, Any] | None) -> str:
    """One line naming a :func:`numerics` record (equal records, equal lines): "unknown" for runs of
    voxuda versions that did not record it."""
    if not record:
        return "unknown"
    parts = [str(record.get("cpu", "unknown")), str(record.get("cpu_capability", "?")),
             f"{record.get('threads', '?')} thread{'' if record.get('threads') == 1 else 's'}",
             f"torch {record.get('torch', '?')}"]
    if record.get("gpu"):
        parts.append(f"{record['gpu']} (cuDNN {record.get('cudnn')})")
    parts += [f"{key}={value}" for key, value in sorted(dict(record.get("env") or {}).items())]
    return ", ".join(parts)


def run_numerics_labels(record: dict[str, Any]) -> list[str]:
    """The distinct :func:`numerics_label` lines a run's ``run.json`` record trained on, in order: its start
    and each resumed session that recorded its own (a run resumed on another machine names both)."""
    sessions = [record.get("numerics")] + [s["numerics"] for s in record.get("resumed", [])
                                           if isinstance(s, dict) and s.get("numerics")]
    return list(dict.fromkeys(numerics_label(n) for n in sessions))


def component_record(kind: str, ref: ComponentRef) -> dict[str, Any]:
    """Registry provenance (plugin, distribution, version, factory) and the resolved config of a component."""
    from voxuda.components import component_record as record

    return record(kind, ref)


def op_backend_used(method: Any, *denoisers: Any) -> str | None:
    """The op backend the run's filters ran on: the method's sub-components first (the teacher's input
    filter in a Vox-UDA run), then the other ``denoisers`` (the validator's view, the test-time input
    filter); None when none of them filters through an op backend or none has filtered yet.

    Each denoiser records the backend it resolved (``op_backend``), so this reads what ran in this run,
    not process-wide state that an earlier run in the same process could have left behind."""
    names = [*method.op_backends().values(), *(getattr(d, "op_backend", None) for d in denoisers)]
    return next((name for name in names if name is not None), None)


def write_text_atomic(text: str, path: str | Path) -> Path:
    """Write text atomically (a kill never leaves half a config.toml; :mod:`voxuda.atomic`)."""
    return atomic.write_text(path, text)


def write_json_atomic(data: dict[str, Any], path: str | Path) -> Path:
    """Write JSON atomically (readers never see half a file; :mod:`voxuda.atomic`)."""
    return atomic.write_json(path, data, indent=2, default=str)

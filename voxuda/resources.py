"""Memory estimates checked before a job starts, so an impossible size is one line instead of an allocation
traceback minutes later (``trainer.batch_size = 1e9``, ``segment --patch 100000``).

The estimates are lower bounds (the input tensors and the first layer's activations, nothing else), so a
rejected job could never have run; a job that passes may still run out of memory later, which the CLI then
reports as one line too.
"""

from __future__ import annotations

import os

from voxuda.errors import ConfigError

__all__ = ["available_memory", "check_fits", "format_bytes"]


def format_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB`` (binary units, as ``free -h`` shows them)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"  # pragma: no cover - the loop always returns


def _host_available() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages; ``None`` when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def available_memory(device: str = "cpu") -> int | None:
    """Bytes available to a job on ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``); ``None`` if unknown.

    A CUDA device reports its total memory (other processes' use changes by the second); torch is imported
    only when it already is, or when a CUDA device is asked for.
    """
    name = str(device)
    if name.startswith("cuda") or name == "auto":
        try:
            import torch

            if torch.cuda.is_available():
                index = torch.device(name).index if name.startswith("cuda:") else 0
                return int(torch.cuda.get_device_properties(index or 0).total_memory)
        except Exception:  # no usable CUDA: fall back to host memory
            pass
    return _host_available()


def check_fits(needed: float, *, device: str, what: str, detail: str, hint: str) -> None:
    """Raise one :class:`ConfigError` line when ``needed`` bytes exceed the memory available on ``device``.

    ``what`` names the option at fault (``trainer.batch_size 1000000000``), ``detail`` how the estimate was
    made and ``hint`` what to do.
    """
    available = available_memory(device)
    if available is None or needed <= available:
        return
    raise ConfigError(f"{what}: needs at least {format_bytes(needed)} of memory ({detail}) but "
                      f"{format_bytes(available)} is available on {device}; {hint}")

"""Physics-based simulator of a cryo-ET subtomogram UDA benchmark.

Modules, one job each: :mod:`.ctf` (contrast transfer), :mod:`.wedge` (missing wedge), :mod:`.shapes`
(procedural templates), :mod:`.structures` (template catalogue incl. maps from PDB entries),
:mod:`.geometry` (rotation and placement), :mod:`.source_model` (Xu-lab 3-D Fourier model),
:mod:`.target_model` (tilt-series projection / WBP model), :mod:`.spec` (what a domain and a preset are),
:mod:`.presets` (the built-in presets and :func:`~.presets.get_preset`), :mod:`.tracks` (appearance track,
crowded source, gap anatomy), :mod:`.preset_file` (presets as TOML files), :mod:`.calibration` (how large
an ice ramp survives reconstruction) and :mod:`.writer` (deterministic, cached benchmark writing:
:func:`simulate_benchmark`).

Importing this package is cheap; heavy work starts only when a function is called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["simulate_benchmark", "PRESETS"]


def __getattr__(name: str) -> Any:
    if name == "simulate_benchmark":
        from voxuda.simulate.writer import simulate_benchmark

        return simulate_benchmark
    if name == "PRESETS":
        from voxuda.simulate.presets import PRESETS

        return PRESETS
    raise AttributeError(name)

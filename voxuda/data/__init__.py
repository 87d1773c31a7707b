"""Data layer: MRC I/O, manifests, subtomogram datasets, transforms, extraction and the simulator.

Importing :mod:`voxuda.data` is light (no torch); import submodules for the heavy parts, e.g.
``from voxuda.data.datasets import load_split`` or ``from voxuda.simulate import simulate_benchmark``.
"""

from voxuda.data.errors import DataError

__all__ = ["DataError"]

"""CUDA sources shipped as package data (read with :func:`kernel_source`)."""

from __future__ import annotations

from importlib import resources


def kernel_source(name: str = "bilateral3d.cu") -> str:
    """Return the text of a kernel source file shipped inside this package.

    Read through importlib.resources so that it works from wheels and zip imports alike; the same text is
    compiled by NVRTC on a GPU and by g++ in the CPU shim used by the tests.
    """
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")

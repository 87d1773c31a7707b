"""Compile the shipped CUDA kernel with NVRTC for real GPU architectures, without a GPU.

NVRTC is a host library: the `nvidia-cuda-nvrtc` wheel ships it (CUDA 13: nvidia/cu13/lib/libnvrtc.so.13;
CUDA 12 wheels: nvidia/cuda_nvrtc/lib/libnvrtc.so.12).  It is called through ctypes so that the check does
not depend on CuPy finding a matching CUDA runtime.
"""

from __future__ import annotations

import ctypes
import site
import sys
from pathlib import Path

import pytest

from voxuda.ops.backends.cupy_backend import KERNEL_NAMES
from voxuda.ops.kernels import kernel_source

ENTRIES = sorted(KERNEL_NAMES.values())


def _find_nvrtc() -> Path | None:
    roots = [Path(p) for p in (*site.getsitepackages(), site.getusersitepackages(), *sys.path) if p]
    patterns = ("nvidia/cu*/lib/libnvrtc.so*", "nvidia/cuda_nvrtc/lib/libnvrtc.so*")
    for root in roots:
        for pat in patterns:
            for cand in sorted(root.glob(pat), reverse=True):
                if "builtins" not in cand.name and "alt" not in cand.name:
                    return cand
    return None


@pytest.fixture(scope="module")
def nvrtc() -> ctypes.CDLL:
    path = _find_nvrtc()
    if path is None:
        pytest.skip("libnvrtc not found: install the nvidia-cuda-nvrtc wheel (pip install nvidia-cuda-nvrtc)")
    return ctypes.CDLL(str(path))


def _compile(lib: ctypes.CDLL, arch: str) -> tuple[int, str, bytes]:
    """Return (nvrtc status, log, PTX or CUBIN bytes)."""
    prog = ctypes.c_void_p()
    src = kernel_source().encode()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"bilateral3d.cu", 0, None, None) == 0
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++14"]
        status = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        kind = "CUBIN" if arch.startswith("sm_") else "PTX"
        out = b""
        if status == 0:
            getattr(lib, f"nvrtcGet{kind}Size")(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            getattr(lib, f"nvrtcGet{kind}")(prog, buf)
            out = buf.raw
        return status, log.value.decode(errors="replace"), out
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def test_ptx_for_compute_80_has_both_entries(nvrtc):
    status, log, ptx = _compile(nvrtc, "compute_80")
    assert status == 0, log
    text = ptx.decode(errors="replace")
    for name in ENTRIES:
        assert f".entry {name}(" in text, f"{name} missing from PTX"
    assert "ex2.approx" in text, "float32 path should use the hardware exp2"
    assert ".shared" in text and "bar.sync" in text, "expected a shared-memory tile with a block barrier"


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cubin_builds(nvrtc, arch):
    status, log, cubin = _compile(nvrtc, arch)
    assert status == 0, log
    assert cubin[:4] == b"\x7fELF"
    for name in ENTRIES:
        assert name.encode() in cubin


def test_nvrtc_reports_errors(nvrtc):
    """The harness must be able to fail: a broken source is rejected."""
    prog = ctypes.c_void_p()
    bad = b'extern "C" __global__ void k(float* a) { a[0] = undefined_symbol; }'
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), bad, b"bad.cu", 0, None, None) == 0
    opt = (ctypes.c_char_p * 1)(b"--gpu-architecture=compute_80")
    assert nvrtc.nvrtcCompileProgram(prog, 1, opt) != 0
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))

"""Contrast transfer functions, in Å, kV, mm and µm.

Two conventions are needed because the benchmark's domain gap is partly *which* convention was used:

* :func:`ctf_standard` — the CTFFIND/RELION form ``-(sqrt(1-A^2) sin chi + A cos chi)`` with amplitude
  contrast ``A`` and a B-factor envelope. Underfocus (positive defocus) gives **dark** protein, as in
  real data.
* :func:`ctf_xulab` — the Xu-lab/aitom (TOM) form ``sign * sin(chi)`` without amplitude contrast and with a
  Gaussian envelope ``exp(-(k / (sigma k_Nyq))^2)``. aitom uses ``sign=+1`` (**bright** protein).

``chi(k) = pi lambda df k^2 - pi/2 Cs lambda^3 k^4``, defocus ``df > 0`` is underfocus.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "wavelength",
    "chi",
    "ctf_standard",
    "ctf_xulab",
    "first_zero",
    "frequency_grid",
    "radial_frequency",
]


def wavelength(kv: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV (0.01969 Å at 300 kV)."""
    v = kv * 1e3
    return 12.2643 / math.sqrt(v * (1.0 + 0.97845e-6 * v))


def chi(
    k: np.ndarray | float, defocus_um: float | np.ndarray, kv: float = 300.0, cs_mm: float = 2.7
) -> np.ndarray:
    """Phase aberration chi(k) for spatial frequency ``k`` in 1/Å."""
    lam = wavelength(kv)
    k2 = np.asarray(k, dtype=np.float64) ** 2
    df = np.asarray(defocus_um, dtype=np.float64) * 1e4
    cs = cs_mm * 1e7
    return np.pi * lam * df * k2 - 0.5 * np.pi * cs * lam**3 * k2**2


def ctf_standard(
    k: np.ndarray,
    defocus_um: float | np.ndarray,
    *,
    kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude: float = 0.07,
    bfactor: float = 0.0,
    phase_shift: float = 0.0,
    contrast_sign: float = -1.0,
) -> np.ndarray:
    """Standard CTF ``sign*(sqrt(1-A^2) sin(chi+phi) + A cos(chi+phi)) * exp(-B k^2/4)``.

    ``contrast_sign=-1`` (default) is the physical convention: protein appears dark at low frequency.
    """
    ph = chi(k, defocus_um, kv, cs_mm) + phase_shift
    w = math.sqrt(1.0 - amplitude**2)
    env = np.exp(-bfactor * np.asarray(k, dtype=np.float64) ** 2 / 4.0)
    return contrast_sign * (w * np.sin(ph) + amplitude * np.cos(ph)) * env


def ctf_xulab(
    k: np.ndarray,
    defocus_um: float = 5.0,
    *,
    k_nyquist: float,
    kv: float = 300.0,
    cs_mm: float = 2.0,
    sigma: float = 0.4,
    contrast_sign: float = 1.0,
) -> np.ndarray:
    """Xu-lab (aitom/TOM) CTF: ``sign * sin(chi) * exp(-(k / (sigma k_Nyq))^2)``, no amplitude contrast."""
    env = np.exp(-((np.asarray(k, dtype=np.float64) / (sigma * k_nyquist)) ** 2))
    return contrast_sign * np.sin(chi(k, defocus_um, kv, cs_mm)) * env


def first_zero(defocus_um: float, *, kv: float = 300.0, cs_mm: float = 2.7, amplitude: float = 0.07) -> float:
    """Resolution (Å) of the first zero of :func:`ctf_standard`, from the analytic root of chi.

    The CTF is ``-sin(chi + arcsin A)``, so the first zero is at ``chi = pi - arcsin(A)``; with
    ``u = k^2`` that is the quadratic ``(pi/2) Cs lam^3 u^2 - pi lam df u + (pi - arcsin A) = 0``.
    """
    lam = wavelength(kv)
    a = 0.5 * np.pi * cs_mm * 1e7 * lam**3
    b = -np.pi * lam * defocus_um * 1e4
    c = np.pi - math.asin(amplitude)
    u = (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
    return 1.0 / math.sqrt(u)


def frequency_grid(shape: tuple[int, ...], voxel: float) -> list[np.ndarray]:
    """Broadcastable FFT-layout frequency axes (1/Å) for an array of ``shape`` with voxel ``voxel`` Å."""
    axes = []
    for i, n in enumerate(shape):
        f = np.fft.fftfreq(n, d=voxel)
        sh = [1] * len(shape)
        sh[i] = n
        axes.append(f.reshape(sh))
    return axes


def radial_frequency(shape: tuple[int, ...], voxel: float) -> np.ndarray:
    """|k| in 1/Å on the FFT grid of ``shape``."""
    axes = frequency_grid(shape, voxel)
    return np.sqrt(sum(a**2 for a in axes))

"""How large an in-box linear ramp can an ice-thickness gradient leave after weighted back-projection?

The writer's ``gradient`` knob adds ``g * noise_std * ramp`` to a reconstructed subtomogram. This module
measures ``g`` from physics instead of guessing it, with the simulator's own reconstruction filter and
back-projection scale (:mod:`.target_model`):

1. A FIB lamella of vitreous ice, mid-plane z = 0, thickness ``t = t0 + s x`` (gradient ``s`` across the
   tilt axis) and, separately, ``t = t0 + s y`` (along it: each detector row is then a constant, which the
   ramp filter reduces to truncation terms); the box sees both, and the slopes add as a vector.
2. At tilt ``theta`` the ray through detector position ``u`` crosses ``L = t(u / cos theta) / cos theta`` of
   ice; zero-loss intensity ``exp(-L / lambda)`` (inelastic mean free path ``lambda``), times an optional
   illumination gradient across the detector. Each projection is normalised to its mean (contrast
   ``I / <I> - 1``, the simulator's unit: counted noise then has variance ``1 / D`` per pixel).
3. The ramp filter (Hann-apodised, detector MTF) and the simulator's back-projection, over a field of view
   of ``fov_px`` pixels; a plane is fitted in ``box``-sized windows across the lamella.
4. The residual slope is converted to the writer's ``g``: ``|slope| * (box / 2) / noise_std``, where
   ``noise_std = sqrt(noise_gain / D)`` is the reconstruction noise at ``D`` counted electrons per pixel
   per tilt (:func:`.target_model.noise_gain`, the same function the simulator uses to set its dose).

The ice itself is uniform inside the slab, and the slab's faces are planes whose Fourier components lie
along k_z, inside the missing wedge, so a box well inside the lamella sees no ice structure; only the
projection-domain intensity trend can leave a ramp, and the ramp filter is a high-pass with zero gain at
zero frequency. The numbers are in docs/data.md ("Calibrating nuisance terms").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from voxuda.simulate.target_model import ProjectionParams, _recon_filter, noise_gain

__all__ = [
    "IceLamella",
    "RampMeasurement",
    "wbp_ramp_after_ice_gradient",
    "writer_gradient",
    "ice_projections",
    "filter_projections",
    "backproject_window",
    "plane_slope",
    "tilt_axis_trend",
    "tilt_angles",
]


@dataclass(frozen=True)
class IceLamella:
    """Physical description of the ice the beam crosses (nm, dimensionless gradients)."""

    thickness_nm: float = 200.0
    #: thickness change per µm along x (nm/µm); a wedge-shaped lamella.
    gradient_nm_per_um: float = 20.0
    #: zero-loss inelastic mean free path of vitreous ice at 300 kV: 395 nm measured on a Titan Krios
    #: (NYSBC Leginon documentation); cryo-ET reviews quote 300-400 nm.
    mean_free_path_nm: float = 395.0
    #: relative illumination change across the whole detector width after gain correction (0.02 = 2 %).
    illumination_gradient: float = 0.0


@dataclass(frozen=True)
class RampMeasurement:
    """Residual in-box ramp: slope per voxel (contrast units) in each window, and the noise it is compared to.
    """

    window_x_px: np.ndarray  # window centres along x, pixels from the tilt axis
    slope_per_voxel: np.ndarray  # |grad| of the fitted plane in each window
    noise_std: float  # reconstruction noise std at the given dose (same units)
    box: int

    @property
    def g(self) -> np.ndarray:
        """The writer's ``gradient`` value equivalent to each window's ramp."""
        return writer_gradient(self.slope_per_voxel, self.noise_std, box=self.box)


def writer_gradient(slope_per_voxel: np.ndarray | float, noise_std: float, box: int) -> np.ndarray:
    """``g`` such that the writer's ramp ``g * noise_std * (d . ax)`` has this slope (``ax`` spans ±1)."""
    return np.asarray(slope_per_voxel) * (box / 2.0) / noise_std


def tilt_angles(tilt_range: tuple[float, float], step: float) -> tuple[float, ...]:
    """The simulator's tilt scheme (:attr:`.target_model.ProjectionParams.angles`)."""
    return ProjectionParams(snr=1.0, defocus_um=1.0, tilt_min=tilt_range[0], tilt_max=tilt_range[1],
                            tilt_step=step).angles


def ice_projections(ice: IceLamella, angles: tuple[float, ...], fov_px: int, voxel_a: float) -> np.ndarray:
    """(T, fov_px) normalised contrast ``I / <I> - 1`` of the ice alone."""
    u = np.arange(fov_px) - (fov_px - 1) / 2.0
    rows = []
    for a in angles:
        c = math.cos(math.radians(a))
        x_nm = u * voxel_a / 10.0 / c
        path = (ice.thickness_nm + ice.gradient_nm_per_um * 1e-3 * x_nm) / c
        inten = np.exp(-path / ice.mean_free_path_nm) * (1.0 + ice.illumination_gradient * u / fov_px)
        rows.append(inten / inten.mean() - 1.0)
    return np.asarray(rows)


def filter_projections(images: np.ndarray) -> np.ndarray:
    """The simulator's ramp x MTF along the detector (y-row constant, so fy = 0)."""
    t, nd = images.shape
    filt, pad = _recon_filter(nd, 1)
    spec = sfft.fft(images, n=pad, axis=1)
    return np.real(sfft.ifft(spec * filt[:, 0][None, :], axis=1))[:, :nd]


def backproject_window(
    filtered: np.ndarray, angles: tuple[float, ...], x0: float, box: int
) -> np.ndarray:
    """Pixel-driven linear-interpolation back-projection of one ``box`` x ``box`` (z, x) window at x0."""
    t, nd = filtered.shape
    c = (box - 1) / 2.0
    iz, ix = np.meshgrid(np.arange(box) - c, np.arange(box) - c + x0, indexing="ij")
    out = np.zeros((box, box))
    for j, a in enumerate(np.radians(angles)):
        u = ix * math.cos(a) + iz * math.sin(a) + (nd - 1) / 2.0
        i0 = np.floor(u).astype(np.int64)
        f = u - i0
        ok = (i0 >= 0) & (i0 + 1 < nd)
        i0c = np.clip(i0, 0, nd - 2)
        row = filtered[j]
        out += np.where(ok, row[i0c] * (1.0 - f) + row[i0c + 1] * f, 0.0)
    return out * (math.pi / (2 * t))


def plane_slope(win: np.ndarray) -> tuple[float, float]:
    """Least-squares plane ``a + b z + c x`` of a (z, x) window: its slopes (b, c) per voxel."""
    n = win.shape[0]
    zz, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a = np.stack([np.ones(n * n), zz.ravel(), xx.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(a, win.ravel(), rcond=None)
    return float(coef[1]), float(coef[2])


def tilt_axis_trend(ice: IceLamella, angles: tuple[float, ...], voxel_a: float) -> np.ndarray:
    """Per tilt, the relative intensity change per pixel along the tilt axis (y) from a thickness gradient
    along y: ``-s voxel / (lambda cos theta)``. Each detector row is then a constant, which the ramp filter
    reduces to its truncation terms."""
    cos = np.cos(np.radians(np.asarray(angles)))
    return -(ice.gradient_nm_per_um * 1e-3 * voxel_a / 10.0) / (ice.mean_free_path_nm * cos)


def wbp_ramp_after_ice_gradient(
    ice: IceLamella,
    *,
    dose_e_per_a2: float = 3.0,
    voxel_a: float = 10.0,
    fov_px: int = 1024,
    box: int = 32,
    tilt_range: tuple[float, float] = (-50.0, 64.0),
    tilt_step: float = 3.0,
    window_fraction: float = 0.8,
    n_windows: int = 17,
) -> RampMeasurement:
    """Residual linear ramp in ``box`` windows on the tilt-axis plane, across ``window_fraction`` of the FOV.

    ``dose_e_per_a2`` is the counted dose per tilt (e/Å²); with ``voxel_a`` it sets the per-pixel count
    ``D`` and so the reconstruction noise the ramp is compared with.
    """
    angles = tilt_angles(tilt_range, tilt_step)
    filtered = filter_projections(ice_projections(ice, angles, fov_px, voxel_a))
    # The same gradient along the tilt axis: rows of constant value a_theta * y; the reconstruction is y
    # times the back-projection of the filtered constant rows, so its slope along y is that back-projection.
    rows = filter_projections(np.repeat(tilt_axis_trend(ice, angles, voxel_a)[:, None], fov_px, axis=1))
    half = window_fraction * fov_px / 2.0 - box
    xs = np.linspace(-half, half, n_windows)
    slope_list = []
    for x in xs:
        bz, bx = plane_slope(backproject_window(filtered, angles, x, box))
        by = float(backproject_window(rows, angles, x, box).mean())
        slope_list.append(math.sqrt(bz * bz + bx * bx + by * by))
    slopes = np.asarray(slope_list)
    d = dose_e_per_a2 * voxel_a**2
    noise_std = math.sqrt(noise_gain(box + 8, angles, box) / d)
    return RampMeasurement(xs, slopes, noise_std, box)

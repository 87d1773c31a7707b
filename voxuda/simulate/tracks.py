"""Benchmark tracks built from a source domain: the appearance track, a crowded source, the gap anatomy.

The content track (``quick``, ``tiny``, ``paper``: targets whose classes, sizes and crowding differ from the
source) lives in :mod:`.presets`. This module derives the other tracks *from* a source spec with
``dataclasses.replace``, so "shares the source's X" holds by construction and a test can check it field by
field:

* :func:`appearance_targets` — same classes and weights, voxel size, crowding (none) and label convention
  as the source; only imaging differs (issue 14, "appearance track");
* :func:`crowded_source` — the source with crowding neighbours at the box faces (labelled protein, as in
  the targets), gold beads (background) and target-sized classes (content track, "a better source");
* :func:`anatomy_chain` — from the source to one target, one knob at a time, cumulatively
  (:data:`ANATOMY_STEPS`).

Numbers marked [R-own] are our measurements (docs/data.md, "Calibrating nuisance terms" and "Tracks").
"""

from __future__ import annotations

from dataclasses import replace

from voxuda.simulate.spec import DomainSpec

__all__ = [
    "FOURIER_MEASURED_PER_NOMINAL",
    "CALIBRATED_GRADIENT",
    "appearance_targets",
    "crowded_source",
    "anatomy_chain",
    "ANATOMY_STEPS",
]

#: The Fourier (Xu-lab, gain-corrected) model's measured SNR per unit of nominal SNR: median 0.263
#: (10-90 %: 0.252-0.271) over 40 source volumes of every source class [R-own]; docs/data.md.
FOURIER_MEASURED_PER_NOMINAL = 0.263

#: In-box linear ramp after WBP from an ice-thickness gradient, in noise stds [R-own, :mod:`.calibration`]:
#: 0.0004-0.0055 for a 10-50 nm/µm lamella wedge in the central 80 % of a 1024-px field of view, up to 0.015
#: for 100 nm/µm at the field's edge. The old guess, 0.2-0.6 (kept by the content track), is 35-550x larger.
CALIBRATED_GRADIENT = (0.0, 0.01)


def appearance_targets(source: DomainSpec, train: int, test: int) -> tuple[DomainSpec, ...]:
    """Two targets that share the source's content and differ only in imaging.

    ``appear_noisier``: the paper's cross-noise-level setting, the source's own Fourier model at nominal
    SNR 0.05 (measured ~0.013; the appearance source is nominal 0.38, measured ~0.10), so the target is the
    noisier domain and a noise generation module has something to match.
    ``appear_insitu``: in-situ-like imaging: tilt series with the standard CTF (3-6 µm, B-factor, amplitude
    contrast, astigmatism), asymmetric tilts -50/+64, misalignment, Poisson counting, ramp-filtered WBP, dark
    polarity, a random gain and offset (removed by per-volume z-scoring) and the *calibrated* ice ramp.
    """
    splits = (("train", train), ("test", test))
    noisier = replace(source, name="appear_noisier", splits=splits, snr_choices=(0.05,))
    insitu = replace(
        source,
        name="appear_insitu",
        model="projection",
        polarity="dark",
        splits=splits,
        snr=(0.01, 0.05),
        snr_choices=(),
        defocus_um=(3.0, 6.0),
        tilt_range=(-50.0, 64.0),
        bfactor=(100.0, 250.0),
        gradient=CALIBRATED_GRADIENT,
        gain=(0.5, 2.0),
    )
    return (noisier, insitu)


#: Target-sized classes for the crowded source: procedural ribosome- and TRiC-like shapes (4976 and 2396
#: voxels at 10 Å against 2066-2778 for the targets' 4V5D, 6ZU5 and 4V8R maps), not the targets' own maps,
#: so the class identity still differs while the size prior no longer does.
CROWDED_EXTRA_CLASSES: tuple[tuple[str, float], ...] = (("ribosome_like", 3.0), ("tric_like", 3.0))
#: Neighbour pool of the crowded source: its own classes, large to small, like the targets' PDB pool (the
#: 4976-voxel ribosome_like is left out: with it, neighbours pushed the foreground to 11 % against the
#: targets' 7-8 %). Measured over 40 volumes [R-own]: foreground 8.8 %, 31 % of it in the 3-voxel border
#: shell; insitu_ribosome 8.1 % and 24 %.
CROWDED_NEIGHBOURS = (
    "tric_like",
    "proteasome_like",
    "apoferritin_like",
    "gaussian_assembly_a",
    "gaussian_assembly_b",
    "ruvab_7pbl",
)


def crowded_source(source: DomainSpec) -> DomainSpec:
    """``source`` with 2-4 neighbours at the box faces (labelled protein), 5 % gold beads (background) and
    target-sized classes added, the crowding and label convention of ``insitu_ribosome``."""
    return replace(
        source,
        classes=source.classes + CROWDED_EXTRA_CLASSES,
        neighbour_classes=CROWDED_NEIGHBOURS,
        neighbours=(2, 4),
        outlier_probability=0.05,
    )


def _3g(x: float) -> float:
    """Three significant digits: a readable value in dumped preset files."""
    return float(f"{x:.3g}")


def _xulab_envelope_bfactor(voxel: float) -> float:
    """B-factor (Å²) whose envelope ``exp(-B k²/4)`` is the Xu-lab CTF envelope ``exp(-(k/(0.4 k_N))²)``."""
    k = 0.4 * 0.5 / voxel
    return 4.0 / k**2


#: (step name, fields it changes, what it adds). Cumulative: every step starts from the previous one.
ANATOMY_STEPS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("a1_noise", ("snr", "snr_choices"),
     "the target's noise level (measured SNR 0.01-0.05) in the source's Fourier model"),
    ("a2_projection", ("model", "snr", "bfactor", "amplitude", "astigmatism_a", "misalign_px"),
     "tilt series, Poisson counting, ramp-filtered WBP (coloured, anisotropic noise), with the source's CTF "
     "(5 µm, no amplitude contrast or astigmatism, the Xu-lab envelope as a B-factor) and no misalignment"),
    ("a3_ctf", ("defocus_um", "bfactor", "amplitude", "astigmatism_a"),
     "the target's CTF: defocus range, B-factor, amplitude contrast and astigmatism"),
    ("a4_wedge", ("tilt_range", "misalign_px"),
     "the target's asymmetric tilt range and per-tilt misalignment"),
    ("a5_pixel", ("voxel_size",), "the target's voxel size range (smaller particles in voxels)"),
    ("a6_gradient", ("gradient", "gain"), "the target's ice-gradient ramp and random gain/offset"),
    ("a7_crowding", ("neighbour_classes", "neighbours", "outlier_probability"),
     "crowding: neighbours at the box faces labelled protein, gold beads labelled background"),
    ("a8_classes", ("classes",), "the target's classes and weights: the full target"),
)


def anatomy_chain(source: DomainSpec, target: DomainSpec, train: int, test: int) -> tuple[DomainSpec, ...]:
    """The source turned into ``target`` one knob at a time (:data:`ANATOMY_STEPS`); the last step equals
    ``target`` in every field but its name.

    ``source`` must be a Fourier-model domain and ``target`` a projection-model one. The target's SNR range
    is a measured SNR; in the Fourier step it is re-expressed as the nominal SNR that measures the same
    (:data:`FOURIER_MEASURED_PER_NOMINAL`), so a1 -> a2 changes the noise's colour, not its level.
    """
    if source.model != "fourier" or target.model != "projection":
        raise ValueError("anatomy_chain needs a fourier-model source and a projection-model target")
    lo, hi = target.snr
    first_voxel = source.voxel_size[0]
    special: dict[str, dict[str, object]] = {
        "a1_noise": {
            "snr": (_3g(lo / FOURIER_MEASURED_PER_NOMINAL), _3g(hi / FOURIER_MEASURED_PER_NOMINAL)),
            "snr_choices": (),
        },
        "a2_projection": {
            "model": "projection",
            "snr": target.snr,
            "bfactor": (_xulab_envelope_bfactor(first_voxel),) * 2,
            "amplitude": 0.0,
            "astigmatism_a": 0.0,
            "misalign_px": 0.0,
        },
    }
    steps = []
    prev = replace(source, splits=(("train", train), ("test", test)))
    for name, fields, _ in ANATOMY_STEPS:
        values = special.get(name) or {f: getattr(target, f) for f in fields}
        prev = replace(prev, name=name, **values)  # type: ignore[arg-type]
        steps.append(prev)
    uncovered = [
        f for f in DomainSpec.__dataclass_fields__
        if f not in ("name", "splits") and getattr(steps[-1], f) != getattr(target, f)
    ]
    if uncovered:
        missed = ", ".join(uncovered)
        raise ValueError(f"source and target differ in fields no anatomy step changes: {missed}")
    return tuple(steps)

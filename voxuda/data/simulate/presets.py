"""Benchmark presets: one labelled source domain and three target domains.

The source is the Xu-lab Fourier model with "known" classes. The three targets use the projection model
and differ from the source *and from each other* the way experimental sets do:

* ``insitu_ribosome`` — crowded FIB-lamella in situ data, ribosome-heavy, asymmetric tilts (−50°/+64°),
  per-sample SNR log-uniform 0.01–0.05, defocus 3–6 µm;
* ``purified_thin_ice`` — a single purified species (apoferritin) in thin ice, symmetric ±60°, higher SNR
  (0.03–0.1), little crowding, 2–4 µm defocus;
* ``dense_cell`` — dense cellular crowding of mixed complexes at low SNR (0.007–0.03), larger pixels
  (12–14 Å), 4–8 µm defocus, stronger thickness gradient.

Polarity: the default presets use **matched** polarity (the source model is run with the physical −sin
convention, so protein is dark in every domain). The ``*_mismatched`` presets keep aitom's +sin (bright)
source; report them as a separate track, because a polarity flip alone dominates every other gap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["DomainSpec", "BenchmarkPreset", "PRESETS", "get_preset", "SOURCE_CLASSES"]

#: "Known" source classes: procedural shapes plus two small real proteins; proteasome_like and
#: pseudo_protein_a also occur in targets (partial class overlap).
SOURCE_CLASSES: tuple[tuple[str, float], ...] = (
    ("gaussian_assembly_a", 1.0),
    ("gaussian_assembly_b", 1.0),
    ("gaussian_assembly_c", 1.0),
    ("pseudo_protein_a", 1.0),
    ("pseudo_protein_b", 1.0),
    ("proteasome_like", 1.0),
    ("ruvab_7pbl", 1.0),
    ("enolase_3enl", 1.0),
)


@dataclass(frozen=True)
class DomainSpec:
    """How one domain is simulated. Ranges are (low, high); SNR ranges are sampled log-uniformly."""

    name: str
    model: str  # "fourier" (Xu-lab source) or "projection" (tilt series + WBP)
    polarity: str  # polarity of protein in the written volumes: "bright" or "dark"
    classes: tuple[tuple[str, float], ...]
    splits: tuple[tuple[str, int], ...]
    snr: tuple[float, float] = (0.05, 0.05)
    snr_choices: tuple[float, ...] = ()  # Fourier model: fixed nominal levels to draw from
    defocus_um: tuple[float, float] = (5.0, 5.0)
    voxel_size: tuple[float, float] = (10.0, 10.0)
    tilt_range: tuple[float, float] = (-60.0, 60.0)
    tilt_step: float = 3.0
    amplitude: float = 0.1
    bfactor: tuple[float, float] = (100.0, 300.0)
    astigmatism_a: float = 500.0
    misalign_px: float = 1.0
    neighbour_classes: tuple[str, ...] = ()
    neighbours: tuple[int, int] = (0, 0)
    same_class_neighbours: bool = False
    outlier_probability: float = 0.0
    gradient: tuple[float, float] = (0.0, 0.0)  # ice-thickness ramp amplitude, in units of the noise std
    gain: tuple[float, float] = (1.0, 1.0)  # random gain (log-uniform) before writing
    margin: int = 4  # scene margin around the box (voxels), so neighbours outside the box still project


@dataclass(frozen=True)
class BenchmarkPreset:
    name: str
    box: int
    source: DomainSpec
    targets: tuple[DomainSpec, ...]
    description: str = ""

    @property
    def domains(self) -> tuple[DomainSpec, ...]:
        return (self.source, *self.targets)


_CROWD = (
    "ribosome_4v5d",
    "tric_4v8r",
    "proteasome_like",
    "apoferritin_4v1w",
    "spliceosome_3jb9",
    "glua_ntd_3o21",
)


def _source(splits: tuple[tuple[str, int], ...], polarity: str, snr: tuple[float, ...]) -> DomainSpec:
    return DomainSpec(
        name="source",
        model="fourier",
        polarity=polarity,
        classes=SOURCE_CLASSES,
        splits=splits,
        snr_choices=snr,
        defocus_um=(5.0, 5.0),
        tilt_range=(-60.0, 60.0),
    )


def _targets(train: int, test: int) -> tuple[DomainSpec, ...]:
    splits = (("train", train), ("test", test))
    insitu = DomainSpec(
        name="insitu_ribosome",
        model="projection",
        polarity="dark",
        splits=splits,
        classes=(
            ("ribosome_4v5d", 3.0),
            ("ribosome_6zu5", 2.0),
            ("tric_4v8r", 1.0),
            ("pseudo_protein_a", 1.0),
        ),
        snr=(0.01, 0.05),
        defocus_um=(3.0, 6.0),
        voxel_size=(10.0, 12.0),
        tilt_range=(-50.0, 64.0),
        neighbour_classes=_CROWD,
        neighbours=(2, 4),
        outlier_probability=0.05,
        gradient=(0.2, 0.6),
        gain=(0.5, 2.0),
        bfactor=(100.0, 250.0),
    )
    purified = DomainSpec(
        name="purified_thin_ice",
        model="projection",
        polarity="dark",
        splits=splits,
        classes=(("apoferritin_4v1w", 1.0),),
        snr=(0.03, 0.1),
        defocus_um=(2.0, 4.0),
        voxel_size=(10.0, 10.0),
        tilt_range=(-60.0, 60.0),
        neighbours=(0, 2),
        same_class_neighbours=True,
        gradient=(0.0, 0.2),
        gain=(0.8, 1.25),
        bfactor=(50.0, 150.0),
        misalign_px=0.5,
        amplitude=0.07,
    )
    dense = DomainSpec(
        name="dense_cell",
        model="projection",
        polarity="dark",
        splits=splits,
        classes=(
            ("tric_4v8r", 2.0),
            ("ribosome_like", 1.0),
            ("proteasome_like", 1.0),
            ("spliceosome_3jb9", 1.0),
            ("gaussian_assembly_a", 1.0),
        ),
        snr=(0.007, 0.03),
        defocus_um=(4.0, 8.0),
        voxel_size=(12.0, 14.0),
        tilt_range=(-45.0, 60.0),
        neighbour_classes=_CROWD + ("ribosome_6zu5", "tric_like"),
        neighbours=(4, 6),
        outlier_probability=0.1,
        gradient=(0.5, 1.0),
        gain=(0.5, 2.0),
        misalign_px=1.5,
        bfactor=(150.0, 300.0),
    )
    return (insitu, purified, dense)


def _preset(
    name: str, src: tuple[int, int], tgt: tuple[int, int], polarity: str, snr: tuple[float, ...], desc: str
) -> BenchmarkPreset:
    return BenchmarkPreset(
        name, 32, _source((("train", src[0]), ("val", src[1])), polarity, snr), _targets(*tgt), desc
    )


PRESETS: dict[str, BenchmarkPreset] = {
    "tiny": _preset("tiny", (16, 8), (16, 8), "dark", (0.05,), "for tests: seconds to generate"),
    "quick": _preset(
        "quick", (320, 64), (200, 100), "dark", (0.05,), "a ~10-minute CPU benchmark of a few methods"
    ),
    "paper": _preset("paper", (1000, 200), (600, 300), "dark", (0.05, 0.03), "paper-sized benchmark"),
}
# The data notes' prototype measured a source SNR of about 0.10 at nominal 0.05; aitom's gain-corrected recipe
# (our default) measures 0.26 x nominal, so nominal 0.38 reproduces the prototype's regime (docs/data.md).
PRESETS["quick_source_snr10"] = replace(
    PRESETS["quick"],
    name="quick_source_snr10",
    source=replace(PRESETS["quick"].source, snr_choices=(0.38,)),
    description="quick with a cleaner source (measured SNR ~0.10, the data notes' prototype regime)",
)
for _base in ("tiny", "quick", "paper"):
    _p = PRESETS[_base]
    PRESETS[f"{_base}_mismatched"] = replace(
        _p,
        name=f"{_base}_mismatched",
        source=replace(_p.source, polarity="bright"),
        description=_p.description + "; source with aitom's bright (+sin) polarity: report separately",
    )


def get_preset(name: str) -> BenchmarkPreset:
    """Preset by name, with a helpful error."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None

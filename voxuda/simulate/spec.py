"""What a simulated domain and a benchmark preset are: :class:`DomainSpec` and :class:`BenchmarkPreset`.

Kept apart from the built-in presets (:mod:`.presets`) and the track builders (:mod:`.tracks`) so that each
of them, and the preset-file reader (:mod:`.preset_file`), can import the types without importing each
other. Every ``DomainSpec`` field carries a help string (``metadata["help"]``): preset files are validated
against these fields and ``voxuda simulate --dump-preset`` prints the help next to them.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from typing import Any

__all__ = ["DomainSpec", "BenchmarkPreset", "FOURIER_ONLY", "PROJECTION_ONLY"]


def _f(default: Any = MISSING, doc: str = "") -> Any:
    """A dataclass field with a help string (preset files and ``--dump-preset`` print it)."""
    return field(default=default, metadata={"help": doc})


@dataclass(frozen=True)
class DomainSpec:
    """How one domain is simulated. Ranges are (low, high); SNR ranges are sampled log-uniformly."""

    name: str = _f(doc="domain name: the manifest's domain column and the folder of its volumes")
    model: str = _f(doc="fourier (Xu-lab 3-D filter model) or projection (tilt series, CTF, Poisson, WBP)")
    polarity: str = _f(doc="protein contrast in the written volumes: bright or dark")
    classes: tuple[tuple[str, float], ...] = _f(doc="main-particle classes and their relative weights")
    splits: tuple[tuple[str, int], ...] = _f(doc="split names and volume counts, e.g. train and test")
    snr: tuple[float, float] = _f(
        (0.05, 0.05), "SNR range, log-uniform; projection: measured SNR; fourier: nominal Xu-lab SNR"
    )
    snr_choices: tuple[float, ...] = _f(
        (), "fourier only: fixed nominal SNR levels to draw from (used instead of snr when not empty)"
    )
    defocus_um: tuple[float, float] = _f((5.0, 5.0), "defocus range in µm (fourier: one value, low = high)")
    voxel_size: tuple[float, float] = _f((10.0, 10.0), "voxel size range in Å (uniform per volume)")
    tilt_range: tuple[float, float] = _f((-60.0, 60.0), "lowest and highest tilt angle in degrees")
    tilt_step: float = _f(3.0, "projection only: tilt increment in degrees")
    amplitude: float = _f(0.1, "projection only: amplitude contrast fraction of the CTF")
    bfactor: tuple[float, float] = _f((100.0, 300.0), "projection only: CTF B-factor range in Å^2")
    astigmatism_a: float = _f(500.0, "projection only: largest astigmatism in Å (uniform from 0)")
    misalign_px: float = _f(1.0, "projection only: std of the per-tilt random misalignment in pixels")
    neighbour_classes: tuple[str, ...] = _f((), "classes crowding neighbours are drawn from")
    neighbours: tuple[int, int] = _f((0, 0), "how many neighbours sit at the box faces (labelled protein)")
    same_class_neighbours: bool = _f(False, "neighbours are of the main particle's class")
    outlier_probability: float = _f(0.0, "probability of a gold bead in the scene (labelled background)")
    gradient: tuple[float, float] = _f(
        (0.0, 0.0), "projection only: in-box linear ramp amplitude in units of the noise std (ice gradient)"
    )
    gain: tuple[float, float] = _f(
        (1.0, 1.0), "projection only: random gain (log-uniform) and offset; z-scoring removes both"
    )
    margin: int = _f(4, "scene margin around the box in voxels, so neighbours outside the box still image")


@dataclass(frozen=True)
class BenchmarkPreset:
    name: str
    box: int
    source: DomainSpec
    targets: tuple[DomainSpec, ...]
    description: str = ""

    #: Where the preset came from when it was read from a file (recorded in benchmark.json); not part of
    #: equality, so a file that copies a built-in compares equal to it.
    origin: str = field(default="", compare=False)

    @property
    def domains(self) -> tuple[DomainSpec, ...]:
        return (self.source, *self.targets)


#: Fields only one simulation model reads (a preset file that sets one for the other model is an error).
PROJECTION_ONLY = (
    "tilt_step", "amplitude", "bfactor", "astigmatism_a", "misalign_px", "gradient", "gain",
)
FOURIER_ONLY = ("snr_choices",)



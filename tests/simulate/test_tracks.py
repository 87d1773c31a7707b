"""Benchmark tracks: the appearance track shares the source's content, the anatomy chain moves one knob at a
time, the crowded source crowds, and the ice-ramp calibration holds up."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pytest

from voxuda.data.mrc import read_labels
from voxuda.simulate import calibration as cal
from voxuda.simulate import simulate_benchmark
from voxuda.simulate.presets import PRESETS, SOURCE_CLASSES
from voxuda.simulate.spec import DomainSpec
from voxuda.simulate.target_model import ProjectionParams, noise_gain, simulate_projection
from voxuda.simulate.tracks import (
    ANATOMY_STEPS,
    CALIBRATED_GRADIENT,
    FOURIER_MEASURED_PER_NOMINAL,
    anatomy_chain,
)
from voxuda.simulate.writer import simulate_sample

_BORDER = 3  # voxels: the shell where crowding neighbours cut by the box face sit


@dataclass
class _DomainStats:
    classes: set[str] = field(default_factory=set)
    n_neighbours: list[int] = field(default_factory=list)
    voxel_sizes: set[float] = field(default_factory=set)
    fg_by_class: dict[str, list[float]] = field(default_factory=dict)
    border_share: list[float] = field(default_factory=list)  # of each volume's foreground


def _label_stats(root: Path) -> dict[str, _DomainStats]:
    """Per domain, from the manifest and the label files."""
    inner = np.zeros((32, 32, 32), bool)
    inner[_BORDER:-_BORDER, _BORDER:-_BORDER, _BORDER:-_BORDER] = True
    out: dict[str, _DomainStats] = {}
    for r in csv.DictReader((root / "manifest.csv").open()):
        d = out.setdefault(r["domain"], _DomainStats())
        label = read_labels(root / r["label"])[0] > 0
        d.classes.add(r["class"])
        d.n_neighbours.append(int(r["n_neighbours"]))
        d.voxel_sizes.add(float(r["voxel_size"]))
        d.fg_by_class.setdefault(r["class"], []).append(float(label.mean()))
        d.border_share.append(float(label[~inner].sum() / max(label.sum(), 1)))
    return out


def _shares_content(stats: dict[str, _DomainStats], source: str, target: str) -> list[str]:
    """Every way ``target`` fails to share the source's content (empty: it shares it).

    Tolerances, from five seeds of appearance_tiny: per-class median foreground ratio target/source
    0.89-1.05 (pose and box-edge cropping only), class-standardised mean ratio 0.994-1.002, border share of
    the foreground <= 0.8 %. A pooled ratio of means is not used on a copy this small: with 16-24 volumes
    over 8 classes of 53-2120 voxels it swung 0.51-1.28 with the class draw alone (on the 300-volume
    ``appearance`` it is 0.96 and 1.08).
    """
    s, t = stats[source], stats[target]
    problems = []
    if not t.classes <= {c for c, _ in SOURCE_CLASSES}:
        problems.append("classes")
    if any(t.n_neighbours) or any(s.n_neighbours):
        problems.append("crowding")
    if t.voxel_sizes != s.voxel_sizes:
        problems.append("voxel size")
    common = [c for c in s.fg_by_class if c in t.fg_by_class]
    if len(common) < 5:
        problems.append("too few shared classes")
    ratios = [np.median(t.fg_by_class[c]) / np.median(s.fg_by_class[c]) for c in common]
    if not all(0.8 <= x <= 1.25 for x in ratios):
        problems.append("per-class size")
    standardised = np.mean([np.mean(t.fg_by_class[c]) for c in common]) / np.mean(
        [np.mean(s.fg_by_class[c]) for c in common]
    )
    if not 0.9 <= standardised <= 1.1:
        problems.append("class-standardised foreground")
    if np.mean(t.border_share) > 0.01:
        problems.append("edge objects")
    return problems


@pytest.fixture(scope="module")
def appearance_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_benchmark("appearance_tiny", tmp_path_factory.mktemp("a") / "a", seed=0, progress=False)


def test_appearance_targets_share_the_source_content(appearance_tiny: Path) -> None:
    preset = PRESETS["appearance_tiny"]
    src = preset.source
    for t in preset.targets:  # by construction, field by field
        assert t.classes == src.classes == SOURCE_CLASSES
        assert t.voxel_size == src.voxel_size == (10.0, 10.0)
        assert (t.neighbours, t.outlier_probability, t.polarity) == ((0, 0), 0.0, src.polarity)
    stats = _label_stats(appearance_tiny)
    assert set(stats) == {"source", "appear_noisier", "appear_insitu"}
    for t in ("appear_noisier", "appear_insitu"):
        assert _shares_content(stats, "source", t) == []
    # measured SNR: the source is the cleanest domain, the cross-noise target clearly noisier
    snr: dict[str, list[float]] = {}
    for r in csv.DictReader((appearance_tiny / "manifest.csv").open()):
        snr.setdefault(r["domain"], []).append(float(r["snr_measured"]))
    med = {d: float(np.median(v)) for d, v in snr.items()}
    assert 0.08 < med["source"] < 0.12 and 0.010 < med["appear_noisier"] < 0.016
    assert med["appear_insitu"] < med["source"] / 3


def test_content_track_fails_the_same_check(tmp_path: Path) -> None:
    """Negative control: the content-track target (other classes, crowding) is caught by the same check."""
    root = simulate_benchmark("tiny", tmp_path / "t", seed=0, progress=False)
    problems = _shares_content(_label_stats(root), "source", "insitu_ribosome")
    assert {"classes", "crowding", "edge objects"} <= set(problems)


def _diff(a: DomainSpec, b: DomainSpec) -> set[str]:
    return {f.name for f in fields(DomainSpec) if getattr(a, f.name) != getattr(b, f.name)}


def test_anatomy_steps_change_exactly_their_fields() -> None:
    preset = PRESETS["anatomy"]
    source, insitu = PRESETS["quick"].source, PRESETS["quick"].targets[0]
    assert preset.source == source
    assert [t.name for t in preset.targets] == [name for name, _, _ in ANATOMY_STEPS]
    prev = source
    for step, (name, changed, what) in zip(preset.targets, ANATOMY_STEPS, strict=True):
        expected = set(changed) | {"name"} | ({"splits"} if prev is source else set())
        assert _diff(prev, step) == expected, name
        assert name in preset.description and what in preset.description
        prev = step
    assert replace(preset.targets[-1], name=insitu.name) == insitu  # the chain ends at the full target
    assert all(dict(t.splits) == {"train": 200, "test": 100} for t in preset.targets)


def test_anatomy_noise_step_keeps_the_noise_level_of_the_target() -> None:
    """a1 re-expresses the target's measured SNR as Fourier-nominal; a2 then changes colour, not level."""
    a1, a2 = PRESETS["anatomy"].targets[:2]
    assert a1.snr == pytest.approx(tuple(x / FOURIER_MEASURED_PER_NOMINAL for x in a2.snr), rel=0.01)
    ratios = [simulate_sample(a1, 32, seed)[3] for seed in range(6)]
    assert all(0.24 < m["snr_measured"] / m["snr"] < 0.29 for m in ratios)


def test_anatomy_chain_refuses_a_pair_it_cannot_join() -> None:
    src, insitu = PRESETS["quick"].source, PRESETS["quick"].targets[0]
    with pytest.raises(ValueError, match="polarity"):
        anatomy_chain(replace(src, polarity="bright"), insitu, 2, 1)
    with pytest.raises(ValueError, match="fourier-model source"):
        anatomy_chain(insitu, insitu, 2, 1)


def test_crowded_source_shows_edge_objects_and_target_sized_classes() -> None:
    preset, quick = PRESETS["quick_crowded_source"], PRESETS["quick"]
    assert replace(preset, name="quick", source=quick.source, description=quick.description) == quick
    src = preset.source
    assert {"ribosome_like", "tric_like"} <= {c for c, _ in src.classes}
    inner = np.zeros((32, 32, 32), bool)
    inner[_BORDER:-_BORDER, _BORDER:-_BORDER, _BORDER:-_BORDER] = True
    fg, border, ratio = [], [], []
    for seed in range(8):
        vol, label, _, meta = simulate_sample(src, 32, seed)
        assert vol.shape == label.shape == (32, 32, 32)
        assert 2 <= meta["n_neighbours"] <= 4
        fg.append(label.mean())
        border.append(label[~inner].sum() / label.sum())
        ratio.append(meta["snr_measured"] / meta["snr"])
    assert np.mean(fg) > 0.04 and np.mean(border) > 0.1  # the source's own: 1.3-1.4 % and 0.2 %
    assert 0.22 < float(np.median(ratio)) < 0.35  # the nominal SNR still refers to the central box


def test_ice_ramp_after_wbp_is_far_below_the_old_guess() -> None:
    """A steep lamella wedge (50 nm/µm) leaves under 0.01 noise stds of in-box ramp, inside the calibrated
    range; the uncalibrated 0.2-0.6 of insitu_ribosome is over 20x larger."""
    m = cal.wbp_ramp_after_ice_gradient(cal.IceLamella(gradient_nm_per_um=50.0), n_windows=5)
    assert m.g.max() < CALIBRATED_GRADIENT[1] == 0.01
    assert PRESETS["quick"].targets[0].gradient[0] > 20 * m.g.max()
    # twice the gradient, about twice the ramp (exp() makes it not quite linear): physics, not round-off
    m2 = cal.wbp_ramp_after_ice_gradient(cal.IceLamella(gradient_nm_per_um=100.0), n_windows=5)
    assert m2.g == pytest.approx(2 * m.g, rel=0.15)


def test_calibration_back_projection_has_the_simulator_scale() -> None:
    """The numerator: a Gaussian blob comes back at its amplitude. The denominator: the noise std predicted
    from the dose equals the one the projection simulator produces at that dose."""
    angles = cal.tilt_angles((-60.0, 60.0), 1.5)
    u = np.arange(256) - 127.5
    sig = 4.0
    sino = np.array([math.sqrt(2 * math.pi) * sig * np.exp(-(u**2) / (2 * sig**2)) for _ in angles])
    win = cal.backproject_window(cal.filter_projections(sino), angles, 0.0, 32)
    assert win[15:17, 15:17].mean() == pytest.approx(1.0, abs=0.08)
    rng = np.random.default_rng(0)
    scene = np.zeros((40, 40, 40), np.float32)
    scene[15:25, 15:25, 15:25] = 1.0
    p = ProjectionParams(snr=0.03, defocus_um=4.0)
    res = simulate_projection(scene, 10.0, 32, p, rng)
    counts_per_px = res.dose_per_tilt * 10.0**2
    predicted = math.sqrt(noise_gain(40, p.angles, 32) / counts_per_px)
    assert float((res.volume - res.clean).std()) == pytest.approx(predicted, rel=0.1)
